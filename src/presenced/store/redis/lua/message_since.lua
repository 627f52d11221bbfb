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

-- Drop the events beyond the history size or older than the cutoff, oldest first, and the
-- message state only a dropped message event kept (HistoryBook RoomLog.trim). The same
-- function is in message_append, message_amend, message_since and message_history.lua.
local function trim(size, cutoff)
  local n = redis.call('LLEN', KEYS[2])
  while n > 0 do
    local ev = cjson.decode(redis.call('LINDEX', KEYS[2], 0))
    if n <= size and not (tonumber(ev.t) < cutoff) then return end
    redis.call('LPOP', KEYS[2])
    n = n - 1
    if ev.k == 'm' then
      local raw = redis.call('HGET', KEYS[3], ev.id)
      if raw then
        local st = cjson.decode(raw)
        redis.call('HDEL', KEYS[3], ev.id)
        redis.call('ZREM', KEYS[4], ev.id)
        if st.x then redis.call('HDEL', KEYS[5], string.len(st.u) .. ':' .. st.u .. st.x) end
      end
    end
  end
end

-- The failsafe TTL of every stream key of the room, refreshed on each write.
local function refresh(ttl)
  for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
end

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
