-- sink_append: append a batch of exported events to a stream, in order, in one step (the
-- Redis Streams sink of the event export, events/redis_stream.py; not a store script).
-- KEYS[1] the stream
-- ARGV[1] MAXLEN: the stream is capped at about this many entries (MAXLEN ~)
-- ARGV[2..] the events, two arguments each: the event id, then the event as JSON
-- Returns how many entries were appended.
local n = 0
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'id', ARGV[i], 'event', ARGV[i + 1])
  n = n + 1
end
return n
