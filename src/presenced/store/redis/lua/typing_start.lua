-- typing_start.lua: add a user to a room's typing list (in the order users started) and
-- refresh the list's failsafe TTL, renewals included.
-- KEYS[1] the room's typing list
-- ARGV[1] user   ARGV[2] key TTL (seconds)
-- Returns the new list, or nil when the user was typing already (nothing changed).

redis.call('EXPIRE', KEYS[1], ARGV[2])
if redis.call('LPOS', KEYS[1], ARGV[1]) then return false end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('LRANGE', KEYS[1], 0, -1)
