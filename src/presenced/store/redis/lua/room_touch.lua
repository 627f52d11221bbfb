-- room_touch: something others see about a member changed (its status): UPDATED with a new
-- room version, NONE when hidden or not a member (Roster.touch).
-- KEYS[1] room state hash: v = version, n = visible members
-- KEYS[2] room members hash: user -> JSON {s = [session ids], h = hidden, m = meta JSON,
--         j = joined at: the wall time of the first session's join, as the caller wrote it}
-- ARGV[1] user
-- ARGV[2] ttl of both keys, milliseconds
-- Returns {kind, version, devices, meta JSON or "", joined at or ""}; kind is updated or none.
local state, members = KEYS[1], KEYS[2]
local user = ARGV[1]
local ttl = tonumber(ARGV[2])

local version = tonumber(redis.call('HGET', state, 'v') or '0')
local raw = redis.call('HGET', members, user)
if not raw then return {'none', version, 0, ''} end

local entry = cjson.decode(raw)
local kind = 'none'
if not entry.h then
  version = redis.call('HINCRBY', state, 'v', 1)
  kind = 'updated'
  redis.call('PEXPIRE', state, ttl)
  redis.call('PEXPIRE', members, ttl)
end
return {kind, version, #entry.s, entry.m or '', entry.j or ''}
