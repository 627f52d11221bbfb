-- presence_remove: take a closed session out of a user's presence (PresenceBook.remove).
-- Last seen is written on the edge where the user stops being visible online, at the caller's
-- wall time; a user left with no session and no last seen (never seen online, e.g. invisible
-- the whole time) is forgotten. The change gets the user's next change number,
-- max(previous + 1, wall ms) (presence/status.py PresenceChange), which is kept in the meta
-- hash (or, when the user is forgotten, recovered from the wall clock by the next change).
-- KEYS[1] user statuses hash: session id -> JSON {s = status, r = rank, t = text, q = seq}
-- KEYS[2] user meta hash: ls = last seen (the wall time as the caller wrote it), seq,
--         ch = the number of the user's latest presence change
-- ARGV[1] session id
-- ARGV[2] wall time, as text
-- ARGV[3] ttl of the statuses hash, milliseconds
-- ARGV[4] ttl of the meta hash, milliseconds
-- ARGV[5] wall time, milliseconds (integer)
-- KEYS[3], KEYS[4], ARGV[6..]: the event outbox (_export.lua); events: 1 force_leave and
-- 2 session.closed (their data given: written when the session was there), 3 user.online,
-- 4 user.offline, 5 user.status
-- Returns {change number, last seen before or "", last seen after or "", n, n records before..., records after...}.
local statuses, meta = KEYS[1], KEYS[2]
local EXPORT_ARGV = 6
--#include _export.lua
--#include _presence.lua

local before = redis.call('HVALS', statuses)
local seen_before = redis.call('HGET', meta, 'ls')
local closed = redis.call('HDEL', statuses, ARGV[1]) == 1
local change = math.max((tonumber(redis.call('HGET', meta, 'ch')) or 0) + 1, tonumber(ARGV[5]))
redis.call('HSET', meta, 'ch', string.format('%d', change))
local after = redis.call('HVALS', statuses)
local b, a = aggregate(before), aggregate(after)

local seen_after = seen_before
if visible(b) and not visible(a) then
  seen_after = ARGV[2]
  redis.call('HSET', meta, 'ls', seen_after)
end
if #after == 0 and not seen_after then
  redis.call('DEL', statuses, meta)
else
  redis.call('PEXPIRE', statuses, tonumber(ARGV[3]))
  redis.call('PEXPIRE', meta, tonumber(ARGV[4]))
end
if closed then
  export(1, '')
  export(2, '')
end
export_presence(3, b, a, seen_after)

local result = {change, seen_before or '', seen_after or '', #before}
for _, raw in ipairs(before) do table.insert(result, raw) end
for _, raw in ipairs(after) do table.insert(result, raw) end
return result
