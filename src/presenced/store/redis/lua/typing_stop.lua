-- typing_stop.lua: remove a user from a room's typing list (an emptied list is gone); the
-- change gets the room's next typing number (max(previous + 1, wall ms): see store/base.py
-- TypingChange).
-- KEYS[1] the room's typing list   KEYS[2] the room's typing number
-- ARGV[1] user   ARGV[2] key TTL (seconds)   ARGV[3] the caller's wall time, milliseconds
-- KEYS[3], KEYS[4], ARGV[4..]: the event outbox (_export.lua); events: 1 typing.stopped (its
-- data given), written on a change
-- Returns {number, the new list (maybe empty)}, or nil when the user was not typing.
local EXPORT_ARGV = 4
--#include _export.lua

if redis.call('LREM', KEYS[1], 0, ARGV[1]) == 0 then return false end
local seq = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, tonumber(ARGV[3]))
redis.call('SET', KEYS[2], string.format('%d', seq), 'EX', ARGV[2])
export(1, '')
return {seq, redis.call('LRANGE', KEYS[1], 0, -1)}
