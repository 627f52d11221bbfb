-- room_add: put a session in a room (presence/roster.py Roster.add), returning the change.
-- KEYS[1] room state hash: v = version, n = visible members
-- KEYS[2] room members hash: user -> JSON {s = [session ids], h = hidden, m = meta JSON}
-- ARGV[1] user
-- ARGV[2] session id
-- ARGV[3] meta as canonical JSON, or "" for none (an existing member keeps its meta)
-- ARGV[4] hidden, "1" or "0" (only used when the user is not yet a member)
-- ARGV[5] ttl of both keys, milliseconds
-- Returns {kind, version, devices, meta JSON or ""}; kind is joined, updated or none.
local state, members = KEYS[1], KEYS[2]
local user, session, meta = ARGV[1], ARGV[2], ARGV[3]
local ttl = tonumber(ARGV[5])

local version = tonumber(redis.call('HGET', state, 'v') or '0')
local raw = redis.call('HGET', members, user)
local kind = 'none'

if not raw then
  local hidden = ARGV[4] == '1'
  local entry = {s = {session}, h = hidden}
  if meta ~= '' then entry.m = meta end
  redis.call('HSET', members, user, cjson.encode(entry))
  if not hidden then
    version = redis.call('HINCRBY', state, 'v', 1)
    redis.call('HINCRBY', state, 'n', 1)
    kind = 'joined'
  end
  redis.call('PEXPIRE', state, ttl)
  redis.call('PEXPIRE', members, ttl)
  return {kind, version, 1, meta}
end

local entry = cjson.decode(raw)
local present = false
for _, s in ipairs(entry.s) do
  if s == session then
    present = true
    break
  end
end
-- Meta is compared as canonical JSON (sorted keys), written by the caller.
local changed = (not present) or (meta ~= '' and meta ~= (entry.m or ''))
if not present then table.insert(entry.s, session) end
if meta ~= '' then entry.m = meta end
redis.call('HSET', members, user, cjson.encode(entry))
if changed and not entry.h then
  version = redis.call('HINCRBY', state, 'v', 1)
  kind = 'updated'
end
redis.call('PEXPIRE', state, ttl)
redis.call('PEXPIRE', members, ttl)
return {kind, version, #entry.s, entry.m or ''}
