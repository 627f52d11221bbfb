-- keys_expire: push back the failsafe expiry of many keys in one call (NodeStore.refresh).
-- KEYS every key to push back (on Cluster: all in one slot)
-- ARGV[1] expiry in seconds; a key whose expiry is already later keeps it (EXPIRE ... GT)
-- Returns how many keys exist and got the new expiry.
local n = 0
for i = 1, #KEYS do
  n = n + redis.call('EXPIRE', KEYS[i], ARGV[1], 'GT')
end
return n
