-- Stores a new session and indexes it under its user, atomically.
-- (Prepended: session_index.lua.)
--
-- KEYS[1]  the session hash
-- KEYS[2]  the user's index
-- ARGV[1]  ms until the session expires
-- ARGV[2]  ms until the session's lifetime cap: the index lives at least that long
-- ARGV[3]  the session id
-- ARGV[4]  key prefix of the session hashes (same hash tag as the keys)
-- ARGV[5]  created_at, Unix ms
-- ARGV[6..] the hash's field/value pairs

index_ready(KEYS[2], ARGV[4])
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, index_member(ARGV[5], ARGV[3]))
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
