-- room_snapshot: the room's version and every member record, read at one instant (the
-- caller leaves hidden members out, as Roster.snapshot does).
-- KEYS[1] room state hash: v = version, n = visible members
-- KEYS[2] room members hash: user -> JSON {s = [session ids], h = hidden, m = meta JSON}
-- (no ARGV)
-- Returns {version, user, record, user, record, ...}.
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local result = redis.call('HGETALL', KEYS[2])
table.insert(result, 1, version)
return result
