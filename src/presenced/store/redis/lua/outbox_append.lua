-- outbox_append: number events along their keys and append them to an outbox stream, in one
-- step (store/redis/outbox.py). Each event's seq is max(previous + 1, wall ms) along its key
-- (events/model.py Event.seq): strictly increasing while the slot remembers the key's last
-- number, and still increasing by the wall clock after it forgot it.
-- KEYS[1] the outbox stream of the events' slot: entries {sq = seq, ev = the event's JSON
--         without its seq}
-- KEYS[2] hash event key -> its latest seq, in the same slot
-- ARGV[1] ttl of the seq hash, milliseconds (the stream is trimmed by the dispatcher instead)
-- ARGV[2..] triples: event key, wall ms (integer), event JSON
-- Returns the seqs given, in order.
local stream, seqs = KEYS[1], KEYS[2]
local out = {}
for i = 2, #ARGV, 3 do
  local key, wall, event = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local seq = tonumber(redis.call('HGET', seqs, key) or '0') + 1
  if wall > seq then seq = wall end
  redis.call('HSET', seqs, key, seq)
  redis.call('XADD', stream, '*', 'sq', seq, 'ev', event)
  out[#out + 1] = seq
end
redis.call('PEXPIRE', seqs, tonumber(ARGV[1]))
return out
