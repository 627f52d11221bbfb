-- presence_set: add a session to a user's presence or change its status (PresenceBook.set).
-- Returns the user's session records before and after plus last seen before and after; the
-- caller derives the public views and the private aggregate from them (store/redis/presence.py).
-- Last seen is written here, on the edge where the user stops being visible online (its last
-- visible session went, or it went invisible), at the caller's wall time. The change gets the
-- user's next change number, max(previous + 1, wall ms) (presence/status.py PresenceChange).
-- KEYS[1] user statuses hash: session id -> JSON {s = status, r = rank, t = text, q = seq}
-- KEYS[2] user meta hash: ls = last seen (the wall time as the caller wrote it), seq,
--         ch = the number of the user's latest presence change
-- ARGV[1] session id
-- ARGV[2] status
-- ARGV[3] the status's rank (presence/status.py STATUS_PRECEDENCE; higher wins)
-- ARGV[4] "1" when a text follows, "0" for none
-- ARGV[5] text
-- ARGV[6] wall time, as text
-- ARGV[7] ttl of the statuses hash, milliseconds
-- ARGV[8] ttl of the meta hash, milliseconds
-- ARGV[9] wall time, milliseconds (integer)
-- ARGV[10] the most sessions the user may have, or 0 for no limit: a session that is new
--          while the hash already has that many is not added, and nothing is written
-- KEYS[3], KEYS[4], ARGV[11..]: the event outbox (_export.lua); events: 1 session.opened
-- (its data given: written when the session is new), 2 user.online, 3 user.offline,
-- 4 user.status
-- Returns {change number, last seen before or "", last seen after or "", n, n records before..., records after...},
-- or {-1, the number of sessions} when ARGV[10] refused a new session.
local statuses, meta = KEYS[1], KEYS[2]
local EXPORT_ARGV = 11
--#include _export.lua
--#include _presence.lua

local limit = tonumber(ARGV[10])
if limit > 0 and redis.call('HEXISTS', statuses, ARGV[1]) == 0 then
  local count = redis.call('HLEN', statuses)
  if count >= limit then return {-1, count} end
end

local before = redis.call('HVALS', statuses)
local seen_before = redis.call('HGET', meta, 'ls')
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local change = math.max((tonumber(redis.call('HGET', meta, 'ch')) or 0) + 1, tonumber(ARGV[9]))
redis.call('HSET', meta, 'ch', string.format('%d', change))
local entry = {s = ARGV[2], r = tonumber(ARGV[3]), q = seq}
if ARGV[4] == '1' then entry.t = ARGV[5] end
local opened = redis.call('HSET', statuses, ARGV[1], cjson.encode(entry)) == 1
local after = redis.call('HVALS', statuses)
local b, a = aggregate(before), aggregate(after)

local seen_after = seen_before
if visible(b) and not visible(a) then
  seen_after = ARGV[6]
  redis.call('HSET', meta, 'ls', seen_after)
end
redis.call('PEXPIRE', statuses, tonumber(ARGV[7]))
redis.call('PEXPIRE', meta, tonumber(ARGV[8]))
if opened then export(1, '') end
export_presence(2, b, a, seen_after)

local result = {change, seen_before or '', seen_after or '', #before}
for _, raw in ipairs(before) do table.insert(result, raw) end
for _, raw in ipairs(after) do table.insert(result, raw) end
return result
