-- _presence.lua: the presence rule in Lua, for presence_set and presence_remove (inlined
-- where a script says "--#include _presence.lua", after _export.lua). The rule itself is
-- presence/status.py derive_view; server/room_events.py _export_presence exports the same
-- events for the memory store.

-- A user's aggregate over its session records: s = the status of the highest rank (nil for
-- none), t = the text of the newest record with that status, n = the number of records.
local function aggregate(records)
  local entries, best, rank = {}, nil, 0
  for i, raw in ipairs(records) do
    local entry = cjson.decode(raw)
    entries[i] = entry
    if entry.r > rank then
      best, rank = entry.s, entry.r
    end
  end
  local text, newest = nil, -1
  for _, entry in ipairs(entries) do
    if entry.s == best and entry.q > newest then
      text, newest = entry.t, entry.q
    end
  end
  return {s = best, t = text, n = #entries}
end

-- Whether others see the user online: it has sessions and its aggregate is not invisible.
local function visible(agg)
  return agg.s ~= nil and agg.s ~= 'invisible'
end

-- The user.* event of a change, from the private views (invisible users are online to the
-- backend): pairs first, first + 1, first + 2 are user.online, user.offline, user.status.
-- b, a: the aggregates before and after; seen_after: the last seen after the change as the
-- caller wrote it (a float's repr), or nil/false.
local function export_presence(first, b, a, seen_after)
  if b.n == 0 and a.n > 0 then
    export(first, '{"status":' .. cjson.encode(a.s) .. ',"text":' .. cjson.encode(a.t)
      .. ',"devices":' .. a.n .. '}')
  elseif b.n > 0 and a.n == 0 then
    export(first + 1, '{"last_seen":' .. (seen_after or 'null') .. '}')
  elseif a.n > 0 and (b.s ~= a.s or b.t ~= a.t) then
    export(first + 2, '{"status":' .. cjson.encode(a.s) .. ',"text":' .. cjson.encode(a.t)
      .. ',"devices":' .. a.n .. ',"previous":' .. cjson.encode(b.s) .. '}')
  end
end
