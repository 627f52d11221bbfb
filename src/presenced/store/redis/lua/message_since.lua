-- message_since.lua: the events after a position, if the stream still covers them
-- (HistoryBook.since). Starts the stream (with ARGV[1] as its epoch) if the room has none,
-- and trims at the wall time first.
-- KEYS[1] stream hash (epoch, offset)    KEYS[2] events list (JSON, oldest first)
-- KEYS[3] states hash (id -> JSON)       KEYS[4] order zset (id by offset)
-- KEYS[5] temp ids hash                  KEYS[6] seen hash (user -> offset)
-- KEYS[7] delivered hash (user -> offset)
-- ARGV[1] epoch for a new stream   ARGV[2] the asker's epoch   ARGV[3] the asker's offset
-- ARGV[4] history size   ARGV[5] cutoff (wall - history ttl)   ARGV[6] key TTL (seconds)
-- Returns {recovered (1 or 0), epoch, latest offset, event JSON...}.

--#include _stream.lua

if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'offset', 0)
end
trim(tonumber(ARGV[4]), tonumber(ARGV[5]))
refresh(ARGV[6])

local epoch = redis.call('HGET', KEYS[1], 'epoch')
local latest = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local asked = tonumber(ARGV[3])
if ARGV[2] ~= epoch or asked > latest then return {0, epoch, latest} end
local first = latest + 1
local head = redis.call('LINDEX', KEYS[2], 0)
if head then first = cjson.decode(head).o end
if asked + 1 < first then return {0, epoch, latest} end

-- The kept offsets are contiguous (every offset taken is kept, trimming pops the oldest),
-- so the first event wanted is at index asked + 1 - first.
local out = {1, epoch, latest}
for _, item in ipairs(redis.call('LRANGE', KEYS[2], asked + 1 - first, -1)) do
  out[#out + 1] = item
end
return out
