-- room_snapshot: the room's version and every member record, read at one instant (snapshot
-- leaves hidden members out, as Roster.snapshot does; the admin's members page keeps them).
-- KEYS[1] room state hash: v = version, n = visible members
-- KEYS[2] room members hash: user -> JSON {s = [session ids], h = hidden, m = meta JSON,
--         j = joined at: the wall time of the first session's join, as the caller wrote it}
-- (no ARGV)
-- Returns {version, user, record, user, record, ...}.
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local result = redis.call('HGETALL', KEYS[2])
table.insert(result, 1, version)
return result
