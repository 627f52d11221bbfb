-- room_add: put a session in a room (presence/roster.py Roster.add), returning the change.
-- KEYS[1] room state hash: v = version, n = visible members
-- KEYS[2] room members hash: user -> JSON {s = [session ids], h = hidden, m = meta JSON,
--         j = joined at: the wall time of the first session's join, as the caller wrote it}
-- ARGV[1] user
-- ARGV[2] session id
-- ARGV[3] meta as canonical JSON, or "" for none (an existing member keeps its meta)
-- ARGV[4] hidden, "1" or "0" (only used when the user is not yet a member)
-- ARGV[5] ttl of both keys, milliseconds
-- ARGV[6] the caller's wall time, as text: the member's joined-at when it is new
-- KEYS[3], KEYS[4], ARGV[7..]: the event outbox (_export.lua); events: 1 member.joined,
-- 2 room.occupied
-- Returns {kind, version, devices, meta JSON or "", joined at or "", occupancy}; kind is
-- joined, updated or none; occupancy is "occupied" when this add created the room (its first
-- member, hidden or not), else "".
local state, members = KEYS[1], KEYS[2]
local user, session, meta = ARGV[1], ARGV[2], ARGV[3]
local ttl = tonumber(ARGV[5])
local EXPORT_ARGV = 7
--#include _export.lua

local version = tonumber(redis.call('HGET', state, 'v') or '0')
local raw = redis.call('HGET', members, user)
local kind = 'none'

if not raw then
  local hidden = ARGV[4] == '1'
  local entry = {s = {session}, h = hidden, j = ARGV[6]}
  if meta ~= '' then entry.m = meta end
  redis.call('HSET', members, user, cjson.encode(entry))
  local occupancy = ''
  if redis.call('HLEN', members) == 1 then occupancy = 'occupied' end
  if occupancy ~= '' then export(2, '{}') end
  if not hidden then
    version = redis.call('HINCRBY', state, 'v', 1)
    redis.call('HINCRBY', state, 'n', 1)
    kind = 'joined'
    export(1, '{"devices":1,"meta":' .. (meta ~= '' and meta or 'null') .. ',"joined_at":' .. ARGV[6] .. '}')
  end
  redis.call('PEXPIRE', state, ttl)
  redis.call('PEXPIRE', members, ttl)
  return {kind, version, 1, meta, entry.j, occupancy}
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
return {kind, version, #entry.s, entry.m or '', entry.j or ''}
