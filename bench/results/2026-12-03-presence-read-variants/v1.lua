local result, n = {}, 0
for i = 1, #KEYS, 2 do
  local records = redis.call('HVALS', KEYS[i])
  result[n + 1] = redis.call('HGET', KEYS[i + 1], 'ls') or ''
  result[n + 2] = #records
  n = n + 2
  for _, raw in ipairs(records) do
    n = n + 1
    result[n] = raw
  end
end
return result
