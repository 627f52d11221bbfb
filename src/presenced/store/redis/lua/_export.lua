-- _export.lua: the event outbox, for the scripts whose transitions are exported; inlined
-- where a script says "--#include _export.lua", after it set `local EXPORT_ARGV = n`
-- (store/redis/outbox.py, events/model.py). Such a script takes two more KEYS after its
-- own: the outbox stream of its slot and that slot's hash event key -> latest seq; and from
-- ARGV[EXPORT_ARGV] on: the wall time in ms, then a (key, head) pair per event it may write,
-- head being the event's JSON up to `"data":` (empty: no sink wants that type). export(i,
-- data) writes the event of pair i (1-based) with its data JSON, numbered along its key
-- (max(previous + 1, wall ms)), in the same step as the change it reports.
local function export(i, data)
  local key, head = ARGV[EXPORT_ARGV + 2 * i - 1], ARGV[EXPORT_ARGV + 2 * i]
  if head == nil or head == '' then return end
  local outbox, seqs = KEYS[#KEYS - 1], KEYS[#KEYS]
  local wall = tonumber(ARGV[EXPORT_ARGV])
  local seq = tonumber(redis.call('HGET', seqs, key) or '0') + 1
  if wall > seq then seq = wall end
  redis.call('HSET', seqs, key, seq)
  redis.call('PEXPIRE', seqs, 604800000)
  redis.call('XADD', outbox, '*', 'sq', seq, 'ev', head .. data .. '}')
end
