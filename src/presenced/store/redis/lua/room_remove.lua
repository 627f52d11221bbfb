-- room_remove: take a session out of a room (Roster.remove), returning the change. The
-- user's last session leaving is LEFT (NONE while hidden); the room's last member leaving
-- deletes the room, so its version starts again from 0 as the Roster's does.
-- KEYS[1] room state hash: v = version, n = visible members
-- KEYS[2] room members hash: user -> JSON {s = [session ids], h = hidden, m = meta JSON,
--         j = joined at: the wall time of the first session's join, as the caller wrote it}
-- ARGV[1] user
-- ARGV[2] session id
-- ARGV[3] ttl of both keys, milliseconds
-- ARGV[4] why, as member.left says it (the exported event's reason)
-- KEYS[3], KEYS[4], ARGV[5..]: the event outbox (_export.lua); events: 1 member.left,
-- 2 room.vacated
-- Returns {kind, version, devices, meta JSON or "", joined at or "", occupancy}; kind is
-- left, updated or none (joined at only while the member stays); occupancy is "vacated" when
-- this remove took the room's last member (hidden or not), else "".
local state, members = KEYS[1], KEYS[2]
local user, session = ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[3])
local EXPORT_ARGV = 5
--#include _export.lua

local version = tonumber(redis.call('HGET', state, 'v') or '0')
local raw = redis.call('HGET', members, user)
if not raw then return {'none', version, 0, ''} end

local entry = cjson.decode(raw)
local index = nil
for i, s in ipairs(entry.s) do
  if s == session then
    index = i
    break
  end
end
if not index then return {'none', version, 0, ''} end
table.remove(entry.s, index)

if #entry.s > 0 then
  redis.call('HSET', members, user, cjson.encode(entry))
  local kind = 'none'
  if not entry.h then
    version = redis.call('HINCRBY', state, 'v', 1)
    kind = 'updated'
  end
  redis.call('PEXPIRE', state, ttl)
  redis.call('PEXPIRE', members, ttl)
  return {kind, version, #entry.s, entry.m or '', entry.j or ''}
end

redis.call('HDEL', members, user)
local kind = 'none'
if not entry.h then
  version = redis.call('HINCRBY', state, 'v', 1)
  redis.call('HINCRBY', state, 'n', -1)
  kind = 'left'
  export(1, '{"reason":' .. cjson.encode(ARGV[4]) .. '}')
end
if redis.call('HLEN', members) == 0 then
  redis.call('DEL', state, members)
  export(2, '{}')
  return {kind, version, 0, '', '', 'vacated'}
end
redis.call('PEXPIRE', state, ttl)
redis.call('PEXPIRE', members, ttl)
return {kind, version, 0, ''}
