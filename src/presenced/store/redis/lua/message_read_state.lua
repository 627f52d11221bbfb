-- message_read_state.lua: a user's seen-up-to offset and the kept, undeleted messages by
-- others after it (HistoryBook.read_state). Read only.
-- KEYS[1] stream hash (epoch, offset)    KEYS[2] events list (JSON, oldest first)
-- KEYS[3] states hash (id -> JSON)       KEYS[4] order zset (id by offset)
-- KEYS[5] temp ids hash                  KEYS[6] seen hash (user -> offset)
-- KEYS[7] delivered hash (user -> offset)
-- ARGV[1] user
-- Returns {seen offset, unread count}.

local user = ARGV[1]
local last = tonumber(redis.call('HGET', KEYS[6], user) or '0')
local unread = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. last, '+inf')) do
  local raw = redis.call('HGET', KEYS[3], id)
  if raw then
    local st = cjson.decode(raw)
    if st.u ~= user and not st.gone then unread = unread + 1 end
  end
end
return {last, unread}
