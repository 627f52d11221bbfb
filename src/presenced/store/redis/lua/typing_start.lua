-- typing_start.lua: add a user to a room's typing list (in the order users started) and
-- refresh the list's failsafe TTL, renewals included; a change gets the room's next typing
-- number (max(previous + 1, wall ms): see store/base.py TypingChange).
-- KEYS[1] the room's typing list   KEYS[2] the room's typing number
-- ARGV[1] user   ARGV[2] key TTL (seconds)   ARGV[3] the caller's wall time, milliseconds
-- KEYS[3], KEYS[4], ARGV[4..]: the event outbox (_export.lua); events: 1 typing.started (its
-- data given), written on a change
-- Returns {number, the new list}, or nil when the user was typing already (nothing changed).
local EXPORT_ARGV = 4
--#include _export.lua

redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if redis.call('LPOS', KEYS[1], ARGV[1]) then return false end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local seq = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, tonumber(ARGV[3]))
redis.call('SET', KEYS[2], string.format('%d', seq), 'EX', ARGV[2])
export(1, '')
return {seq, redis.call('LRANGE', KEYS[1], 0, -1)}
