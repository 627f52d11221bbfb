-- _stream.lua: shared by the message_*.lua scripts, inlined where they say
-- "--#include _stream.lua" (Scripts does it when loading). Expects the stream's KEYS layout:
-- KEYS[2] events list, KEYS[3] states hash, KEYS[4] order zset, KEYS[5] temp ids hash,
-- KEYS[1..7] every stream key.

-- Drop the events beyond the history size or older than the cutoff, oldest first, and the
-- message state only a dropped message event kept (HistoryBook RoomLog.trim).
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
