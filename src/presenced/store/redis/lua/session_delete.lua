-- session_delete: remove a session record, only if the given owner owns it when one is given
-- (SessionStore.delete).
-- KEYS[1] session hash: d = serialized Session, n = owner node, t = resume token, u = user
-- ARGV[1] "1" when an owner follows, "0" to delete whoever owns it
-- ARGV[2] owner node
-- Returns {} when nothing was removed, else {node, resume token, user, serialized Session} of
-- the removed record (the caller fixes the indexes, the watched users' ones from the record).
local old = redis.call('HMGET', KEYS[1], 'n', 't', 'u', 'd')
if not old[1] then return {} end
if ARGV[1] == '1' and old[1] ~= ARGV[2] then return {} end
redis.call('DEL', KEYS[1])
return {old[1], old[2], old[3], old[4]}
