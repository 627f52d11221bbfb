-- typing_stop.lua: remove a user from a room's typing list (an emptied list is gone).
-- KEYS[1] the room's typing list
-- ARGV[1] user
-- Returns the new list (maybe empty), or nil when the user was not typing.

if redis.call('LREM', KEYS[1], 0, ARGV[1]) == 0 then return false end
return redis.call('LRANGE', KEYS[1], 0, -1)
