-- Stores a new session and indexes it under its user, atomically.
--
-- KEYS[1]  the session hash
-- KEYS[2]  the user's index (a set of session ids)
-- ARGV[1]  ms until the session expires
-- ARGV[2]  ms until the session's lifetime cap: the index lives at least that long
-- ARGV[3]  the session id
-- ARGV[4..] the hash's field/value pairs

redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
