-- outbox_trim: ack a sink's entries, then drop the entries of an outbox stream that every
-- sink's group has acked (store/redis/outbox.py), in one call.
-- KEYS[1] the outbox stream
-- ARGV[1] the group acking (a sink's), ARGV[2] the number N of entry ids it acks (0: none),
-- ARGV[3 .. 2 + N] those ids
-- ARGV[3 + N ..] the groups that must have acked (one per sink); a group not created yet
--           has acked nothing
-- Returns the number of entries dropped.
local stream = KEYS[1]
if redis.call('EXISTS', stream) == 0 then return 0 end
local acked = tonumber(ARGV[2])
if acked > 0 then
  redis.call('XACK', stream, ARGV[1], unpack(ARGV, 3, 2 + acked))
end
local wanted = {}
for i = 3 + acked, #ARGV do wanted[#wanted + 1] = ARGV[i] end
local groups = {}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  groups[info['name']] = info
end
-- Entries below this id are delivered to and acked by every group.
local floor = nil
local function lower(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
for _, name in ipairs(wanted) do
  local info = groups[name]
  if info == nil then return 0 end
  local bound = info['last-delivered-id']
  if tonumber(info['pending']) > 0 then
    local summary = redis.call('XPENDING', stream, name)
    bound = summary[2]
  end
  if floor == nil or lower(bound, floor) then floor = bound end
end
if floor == nil then return 0 end
local before = redis.call('XLEN', stream)
-- MINID keeps the entry at the floor itself: it may be the pending one, or the last one
-- delivered (acked: drop it too when nothing is pending anywhere and it is the last entry).
redis.call('XTRIM', stream, 'MINID', floor)
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
if last ~= nil and last[1] == floor then
  local all_acked = true
  for _, name in ipairs(wanted) do
    if tonumber(groups[name]['pending']) > 0 then all_acked = false end
  end
  if all_acked and redis.call('XLEN', stream) == 1 then
    redis.call('XDEL', stream, floor)
  end
end
return before - redis.call('XLEN', stream)
