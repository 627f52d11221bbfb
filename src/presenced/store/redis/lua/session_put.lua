-- session_put: insert a session record, or replace it if the writer's node owns it
-- (SessionStore.put): a node that lost the session can never write it back.
-- KEYS[1] session hash: d = serialized Session, n = owner node, t = resume token, u = user
-- ARGV[1] the serialized Session
-- ARGV[2] its node
-- ARGV[3] its resume token
-- ARGV[4] its user
-- ARGV[5] ttl, milliseconds
-- Returns {0} when another node owns it (nothing written), {1} for a new record, or
-- {1, old resume token, old user} for a replaced one (the caller fixes the indexes).
local old = redis.call('HMGET', KEYS[1], 'n', 't', 'u')
if old[1] and old[1] ~= ARGV[2] then return {0} end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'n', ARGV[2], 't', ARGV[3], 'u', ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
if not old[1] then return {1} end
return {1, old[2], old[3]}
