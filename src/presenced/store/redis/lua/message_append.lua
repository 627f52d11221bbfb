-- message_append.lua: add a message to a room's stream, or return the kept message that the
-- same user first sent with the same temporary id (HistoryBook.append). Starts the stream
-- (with ARGV[1] as its epoch) if the room has none; trims before and after; marks the sender
-- seen and delivered up to the new message.
-- KEYS[1] stream hash (epoch, offset)    KEYS[2] events list (JSON, oldest first)
-- KEYS[3] states hash (id -> JSON)       KEYS[4] order zset (id by offset)
-- KEYS[5] temp ids hash                  KEYS[6] seen hash (user -> offset)
-- KEYS[7] delivered hash (user -> offset)
-- ARGV[1] epoch for a new stream   ARGV[2] user   ARGV[3] device
-- ARGV[4] "1" if a temporary id is given, else "0"   ARGV[5] temporary id
-- ARGV[6] body (JSON text)   ARGV[7] wall time (a float's repr)   ARGV[8] message id
-- ARGV[9] history size   ARGV[10] cutoff (wall - history ttl: older events are trimmed)
-- ARGV[11] key TTL (seconds)
-- KEYS[8], KEYS[9], ARGV[12..]: the event outbox (_export.lua); events: 1 message.created,
-- 2 receipt.seen (the sender's own, when the send moved it)
-- Returns {0, epoch, offset, seen before} for a new message, {1, epoch, state JSON} for a
-- duplicate.

--#include _stream.lua
local EXPORT_ARGV = 12
--#include _export.lua

local user, size, cutoff = ARGV[2], tonumber(ARGV[9]), tonumber(ARGV[10])
local has_temp = ARGV[4] == '1'
local temp_key = string.len(user) .. ':' .. user .. ARGV[5]

if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'offset', 0)
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
trim(size, cutoff)

if has_temp then
  local id = redis.call('HGET', KEYS[5], temp_key)
  if id then
    -- Always there: trimming drops a message's state and its temp id together.
    refresh(ARGV[11])
    return {1, epoch, redis.call('HGET', KEYS[3], id)}
  end
end

local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
if size > 0 then
  local st = {id = ARGV[8], o = offset, t = ARGV[7], u = user, d = ARGV[3], b = ARGV[6]}
  if has_temp then st.x = ARGV[5] end
  st.k = 'm'
  redis.call('RPUSH', KEYS[2], cjson.encode(st))
  trim(size, cutoff)
  st.k = nil
  redis.call('HSET', KEYS[3], ARGV[8], cjson.encode(st))
  redis.call('ZADD', KEYS[4], offset, ARGV[8])
  if has_temp then redis.call('HSET', KEYS[5], temp_key, ARGV[8]) end
end

-- Sending marks the room seen (and so delivered) up to one's own message; the caller gets
-- the seen position from before, to send the receipts this implies.
local seen_before = tonumber(redis.call('HGET', KEYS[6], user) or '0')
for i = 6, 7 do
  if tonumber(redis.call('HGET', KEYS[i], user) or '0') < offset then
    redis.call('HSET', KEYS[i], user, offset)
  end
end
refresh(ARGV[11])
local temp = 'null'
if has_temp then temp = cjson.encode(ARGV[5]) end
export(1, '{"epoch":' .. cjson.encode(epoch) .. ',"offset":' .. offset .. ',"id":'
  .. cjson.encode(ARGV[8]) .. ',"user":' .. cjson.encode(user) .. ',"device":'
  .. cjson.encode(ARGV[3]) .. ',"body":' .. ARGV[6] .. ',"time":' .. ARGV[7]
  .. ',"temp_id":' .. temp .. '}')
if seen_before < offset then
  export(2, '{"offset":' .. offset .. ',"previous":' .. seen_before .. '}')
end
return {0, epoch, offset, seen_before}
