-- room_set_meta: replace a member's metadata (Roster.set_meta), returning the change.
-- KEYS[1] room state hash: v = version, n = visible members
-- KEYS[2] room members hash: user -> JSON {s = [session ids], h = hidden, m = meta JSON,
--         j = joined at: the wall time of the first session's join, as the caller wrote it}
-- ARGV[1] user
-- ARGV[2] meta as canonical JSON (sorted keys)
-- ARGV[3] ttl of both keys, milliseconds
-- Returns {kind, version, devices, meta JSON or "", joined at or ""}; kind is updated or none.
local state, members = KEYS[1], KEYS[2]
local user, meta = ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[3])

local version = tonumber(redis.call('HGET', state, 'v') or '0')
local raw = redis.call('HGET', members, user)
if not raw then return {'none', version, 0, ''} end

local entry = cjson.decode(raw)
local changed = entry.m ~= meta
entry.m = meta
redis.call('HSET', members, user, cjson.encode(entry))
local kind = 'none'
if changed and not entry.h then
  version = redis.call('HINCRBY', state, 'v', 1)
  kind = 'updated'
end
redis.call('PEXPIRE', state, ttl)
redis.call('PEXPIRE', members, ttl)
return {kind, version, #entry.s, meta, entry.j or ''}
