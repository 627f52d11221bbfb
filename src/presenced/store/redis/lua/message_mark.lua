-- message_mark.lua: move a user's delivered or seen position forward, never back and never
-- past the stream's latest offset; seen implies delivered (HistoryBook.mark).
-- KEYS[1] stream hash (epoch, offset)    KEYS[2] events list (JSON, oldest first)
-- KEYS[3] states hash (id -> JSON)       KEYS[4] order zset (id by offset)
-- KEYS[5] temp ids hash                  KEYS[6] seen hash (user -> offset)
-- KEYS[7] delivered hash (user -> offset)
-- ARGV[1] user   ARGV[2] "seen" or "delivered" (anything else: delivered)   ARGV[3] offset
-- ARGV[4] key TTL (seconds)
-- KEYS[8], KEYS[9], ARGV[5..]: the event outbox (_export.lua); events: 1 receipt.seen
-- Returns {old, new} of that position ({0, 0} when the room has no stream).
local EXPORT_ARGV = 5
--#include _export.lua


-- The failsafe TTL of every stream key of the room, refreshed on each write.
local function refresh(ttl)
  for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
end

if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local user, seen = ARGV[1], ARGV[2] == 'seen'
local latest = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local key = KEYS[7]
if seen then key = KEYS[6] end
local old = tonumber(redis.call('HGET', key, user) or '0')
local new = math.max(old, math.min(tonumber(ARGV[3]), latest))
redis.call('HSET', key, user, new)
if seen and tonumber(redis.call('HGET', KEYS[7], user) or '0') < new then
  redis.call('HSET', KEYS[7], user, new)
end
refresh(ARGV[4])
if seen and new > old then
  export(1, '{"offset":' .. new .. ',"previous":' .. old .. '}')
end
return {old, new}
