#!lua flags=no-writes
-- presence_read: many users' session status records and last seen, in one call
-- (RedisPresenceStore._read: get_many, get_private; on one server, not on Cluster, where
-- different users' keys are in different slots). Every key of the call is read at one
-- instant. Read only: the no-writes flag has the server refuse a write here, and lets the
-- script run where writes are refused (EVALSHA_RO, a replica, a server at maxmemory).
-- KEYS[2i-1] user i's statuses hash: session id -> JSON {s = status, r = rank, t = text, q = seq}
-- KEYS[2i]   user i's meta hash: ls = last seen (the wall time as the caller wrote it)
-- (no ARGV)
-- Returns one JSON text, [[last seen, [record, ...]], ...], a pair per user in KEYS order.
-- Last seen is the ls field as a JSON string, or null: none, or not read. It counts only for
-- a user with no session or an invisible one (presence/status.py derive_view), so it is
-- read only when the user has no record or a record containing the text "invisible": a
-- record whose status is invisible always does (cjson writes the string as it is), and a
-- text that merely contains the word costs one read more, nothing else. The records are
-- presence_set's cjson objects as stored; ls is a float's repr (no quote, no backslash).
local find, concat = string.find, table.concat
local parts = {}
for i = 1, #KEYS, 2 do
  local records = redis.call('HVALS', KEYS[i])
  local counts = #records == 0
  for j = 1, #records do
    if counts then break end
    counts = find(records[j], 'invisible', 1, true) ~= nil
  end
  local seen = counts and redis.call('HGET', KEYS[i + 1], 'ls')
  parts[#parts + 1] = '[' .. (seen and ('"' .. seen .. '"') or 'null') .. ',['
    .. concat(records, ',') .. ']]'
end
return '[' .. concat(parts, ',') .. ']'
