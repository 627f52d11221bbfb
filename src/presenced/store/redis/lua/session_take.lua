-- session_take: move a session's ownership if from_node still owns it (SessionStore.take);
-- of several nodes racing to take it, exactly one succeeds.
-- KEYS[1] session hash: d = serialized Session, n = owner node, t = resume token, u = user
-- ARGV[1] from node
-- ARGV[2] to node
-- ARGV[3] ttl, milliseconds
-- Returns 1 when taken, 0 when the record is gone or another node owns it.
if redis.call('HGET', KEYS[1], 'n') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'n', ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
