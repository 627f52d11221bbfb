-- message_position.lua: the stream's epoch and latest offset, starting the stream (with
-- ARGV[1] as its epoch, offset 0) if the room has none (HistoryBook.position).
-- KEYS[1] stream hash (epoch, offset)
-- ARGV[1] epoch for a new stream   ARGV[2] key TTL (seconds), set when the stream starts
-- Returns {epoch, offset}.

if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'offset', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'epoch', 'offset')
