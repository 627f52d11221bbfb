-- message_amend.lua: edit (ARGV[3] = "1") or delete a kept, undeleted message; the edit or
-- delete takes the stream's next offset (HistoryBook.amend). Trims at the wall time first, so
-- a message past its age is gone even if nothing else trimmed it yet.
-- KEYS[1] stream hash (epoch, offset)    KEYS[2] events list (JSON, oldest first)
-- KEYS[3] states hash (id -> JSON)       KEYS[4] order zset (id by offset)
-- KEYS[5] temp ids hash                  KEYS[6] seen hash (user -> offset)
-- KEYS[7] delivered hash (user -> offset)
-- ARGV[1] message id   ARGV[2] user (editor or deleter)   ARGV[3] "1" edit, "0" delete
-- ARGV[4] new body (JSON text; ignored for a delete)   ARGV[5] wall time (a float's repr)
-- ARGV[6] history size   ARGV[7] cutoff (wall - history ttl)   ARGV[8] key TTL (seconds)
-- KEYS[8], KEYS[9], ARGV[9..]: the event outbox (_export.lua); events: 1 message.edited,
-- 2 message.deleted
-- Returns {epoch, offset}, or nil when the message is not kept or already deleted.

--#include _stream.lua
local EXPORT_ARGV = 9
--#include _export.lua

if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local size, cutoff = tonumber(ARGV[6]), tonumber(ARGV[7])
trim(size, cutoff)
refresh(ARGV[8])
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then return false end
local st = cjson.decode(raw)
if st.gone then return false end

local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local ev = {id = ARGV[1], o = offset, t = ARGV[5], u = ARGV[2]}
if ARGV[3] == '1' then
  st.b, ev.b, ev.k = ARGV[4], ARGV[4], 'e'
else
  st.b, st.gone, ev.k = nil, true, 'd'
end
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(st))
if size > 0 then
  redis.call('RPUSH', KEYS[2], cjson.encode(ev))
  trim(size, cutoff)
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local head = '{"epoch":' .. cjson.encode(epoch) .. ',"offset":' .. offset .. ',"id":'
  .. cjson.encode(ARGV[1]) .. ',"user":' .. cjson.encode(ARGV[2])
if ARGV[3] == '1' then
  export(1, head .. ',"body":' .. ARGV[4] .. ',"time":' .. ARGV[5] .. '}')
else
  export(2, head .. ',"time":' .. ARGV[5] .. '}')
end
return {epoch, offset}
