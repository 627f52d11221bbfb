-- room_delete: remove a room and all its members at once (presence/roster.py Roster.delete).
-- The version moves on and the state hash stays (with no members), so a room made again later
-- goes on numbering from there, past what any node may still remember of the deleted one.
-- KEYS[1] room state hash: v = version, n = visible members
-- KEYS[2] room members hash: user -> JSON {s = [session ids], h = hidden, m = meta JSON,
--         j = joined at: the wall time of the first session's join, as the caller wrote it}
-- ARGV[1] ttl of the state hash, milliseconds
-- ARGV[2] why (the exported event's reason)
-- KEYS[3], KEYS[4], ARGV[3..]: the event outbox (_export.lua); events: 1 room.deleted
-- Returns {version, user1, record1, user2, record2, ...}: the version after the deletion (0
-- when there was no such room) and the members it had.
local EXPORT_ARGV = 3
--#include _export.lua
local members = redis.call('HGETALL', KEYS[2])
if #members == 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  return {0}
end
local names = {}
for i = 1, #members, 2 do table.insert(names, members[i]) end
table.sort(names)
local listed = '[]'
if #names > 0 then listed = cjson.encode(names) end
export(1, '{"reason":' .. cjson.encode(ARGV[2]) .. ',"members":' .. listed .. '}')
local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'n', 0)
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
local result = {version}
for _, item in ipairs(members) do table.insert(result, item) end
return result
