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
-- Returns {change number, last seen before or "", last seen after or "", n, n records before..., records after...}.
local statuses, meta = KEYS[1], KEYS[2]

-- Whether others see the user online: it has sessions and its aggregate is not invisible.
local function visible(records)
  local best, rank = nil, 0
  for _, raw in ipairs(records) do
    local entry = cjson.decode(raw)
    if entry.r > rank then
      best, rank = entry.s, entry.r
    end
  end
  return best ~= nil and best ~= 'invisible'
end

local before = redis.call('HVALS', statuses)
local seen_before = redis.call('HGET', meta, 'ls')
redis.call('HDEL', statuses, ARGV[1])
local change = math.max((tonumber(redis.call('HGET', meta, 'ch')) or 0) + 1, tonumber(ARGV[5]))
redis.call('HSET', meta, 'ch', string.format('%d', change))
local after = redis.call('HVALS', statuses)

local seen_after = seen_before
if visible(before) and not visible(after) then
  seen_after = ARGV[2]
  redis.call('HSET', meta, 'ls', seen_after)
end
if #after == 0 and not seen_after then
  redis.call('DEL', statuses, meta)
else
  redis.call('PEXPIRE', statuses, tonumber(ARGV[3]))
  redis.call('PEXPIRE', meta, tonumber(ARGV[4]))
end

local result = {change, seen_before or '', seen_after or '', #before}
for _, raw in ipairs(before) do table.insert(result, raw) end
for _, raw in ipairs(after) do table.insert(result, raw) end
return result
