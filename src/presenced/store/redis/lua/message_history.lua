-- message_history.lua: the newest kept, undeleted messages before an offset, as they are now
-- (HistoryBook.last_messages). Trims at the wall time first; a room without a stream has none.
-- KEYS[1] stream hash (epoch, offset)    KEYS[2] events list (JSON, oldest first)
-- KEYS[3] states hash (id -> JSON)       KEYS[4] order zset (id by offset)
-- KEYS[5] temp ids hash                  KEYS[6] seen hash (user -> offset)
-- KEYS[7] delivered hash (user -> offset)
-- ARGV[1] limit (0: all)   ARGV[2] before (an offset; "" for none)   ARGV[3] history size
-- ARGV[4] cutoff (wall - history ttl)   ARGV[5] key TTL (seconds)
-- Returns the messages' state JSON, newest first.

--#include _stream.lua

if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
trim(tonumber(ARGV[3]), tonumber(ARGV[4]))
refresh(ARGV[5])

local limit = tonumber(ARGV[1])
local max = '+inf'
if ARGV[2] ~= '' then max = '(' .. ARGV[2] end
local out = {}
for _, id in ipairs(redis.call('ZREVRANGEBYSCORE', KEYS[4], max, '-inf')) do
  local raw = redis.call('HGET', KEYS[3], id)
  if raw and not cjson.decode(raw).gone then
    out[#out + 1] = raw
    if #out == limit then break end
  end
end
return out
