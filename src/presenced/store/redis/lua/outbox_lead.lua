-- outbox_lead: take or keep the dispatcher's lead (store/redis/outbox.py): one node at a time
-- reads the outbox and feeds the sinks.
-- KEYS[1] string: the leading node's id. TTL: ARGV[2]
-- ARGV[1] this node's id
-- ARGV[2] lease, milliseconds
-- ARGV[3] "1" to give the lead up (a draining node), else "0"
-- Returns 1 when this node leads (now, until the lease runs out), else 0.
local holder = redis.call('GET', KEYS[1])
if ARGV[3] == '1' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
