-- room_set_hidden: hide a member (LEFT for the others) or reveal it (JOINED, with its devices
-- and meta as they are now); NONE when not a member or already so (Roster.set_hidden).
-- KEYS[1] room state hash: v = version, n = visible members
-- KEYS[2] room members hash: user -> JSON {s = [session ids], h = hidden, m = meta JSON,
--         j = joined at: the wall time of the first session's join, as the caller wrote it}
-- ARGV[1] user
-- ARGV[2] hidden, "1" or "0"
-- ARGV[3] ttl of both keys, milliseconds
-- KEYS[3], KEYS[4], ARGV[4..]: the event outbox (_export.lua); events: 1 member.left
-- (reason offline), 2 member.joined
-- Returns {kind, version, devices, meta JSON or "", joined at or ""}; kind is left, joined or
-- none (a revealed member keeps the joined-at of its first session).
local state, members = KEYS[1], KEYS[2]
local user = ARGV[1]
local hidden = ARGV[2] == '1'
local ttl = tonumber(ARGV[3])
local EXPORT_ARGV = 4
--#include _export.lua

local version = tonumber(redis.call('HGET', state, 'v') or '0')
local raw = redis.call('HGET', members, user)
if not raw then return {'none', version, 0, ''} end

local entry = cjson.decode(raw)
if entry.h == hidden then return {'none', version, 0, ''} end
entry.h = hidden
redis.call('HSET', members, user, cjson.encode(entry))
version = redis.call('HINCRBY', state, 'v', 1)
redis.call('PEXPIRE', state, ttl)
redis.call('PEXPIRE', members, ttl)
if hidden then
  redis.call('HINCRBY', state, 'n', -1)
  export(1, '{"reason":"offline"}')
  return {'left', version, 0, ''}
end
redis.call('HINCRBY', state, 'n', 1)
export(2, '{"devices":' .. #entry.s .. ',"meta":' .. (entry.m or 'null') .. ',"joined_at":'
  .. (entry.j ~= nil and entry.j ~= '' and entry.j or 'null') .. '}')
return {'joined', version, #entry.s, entry.m or '', entry.j or ''}
