-- one JSON text: [[ls or null, [records]], ...]
local parts, n = {}, 0
local find = string.find
for i = 1, #KEYS, 2 do
  local records = redis.call('HVALS', KEYS[i])
  local count = #records
  local seen = count == 0
  for j = 1, count do
    if not seen and find(records[j], 'invisible', 1, true) then seen = true end
  end
  local ls = seen and redis.call('HGET', KEYS[i + 1], 'ls')
  n = n + 1
  parts[n] = '[' .. (ls and ('"' .. ls .. '"') or 'null') .. ',[' .. table.concat(records, ',') .. ']]'
end
return '[' .. table.concat(parts, ',') .. ']'
