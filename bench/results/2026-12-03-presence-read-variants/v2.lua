local result, n = {}, 0
local find = string.find
for i = 1, #KEYS, 2 do
  local records = redis.call('HVALS', KEYS[i])
  local count = #records
  local seen = count == 0
  for j = 1, count do
    local raw = records[j]
    if not seen and find(raw, 'invisible', 1, true) then seen = true end
    result[n + 2 + j] = raw
  end
  result[n + 1] = seen and (redis.call('HGET', KEYS[i + 1], 'ls') or '') or ''
  result[n + 2] = count
  n = n + 2 + count
end
return result
