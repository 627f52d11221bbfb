-- message_authors.lua: the authors of the kept messages (deleted ones too) with offsets in
-- (after, upto] (HistoryBook.authors_between). Read only.
-- KEYS[1] stream hash (epoch, offset)    KEYS[2] events list (JSON, oldest first)
-- KEYS[3] states hash (id -> JSON)       KEYS[4] order zset (id by offset)
-- KEYS[5] temp ids hash                  KEYS[6] seen hash (user -> offset)
-- KEYS[7] delivered hash (user -> offset)
-- ARGV[1] after   ARGV[2] upto
-- Returns the authors, each once.

local out, seen = {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[1], ARGV[2])) do
  local raw = redis.call('HGET', KEYS[3], id)
  if raw then
    local author = cjson.decode(raw).u
    if not seen[author] then
      seen[author] = true
      out[#out + 1] = author
    end
  end
end
return out
