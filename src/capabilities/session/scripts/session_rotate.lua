-- Moves a live session to a new id and drops the old one, in one atomic step: RENAME keeps the
-- content and the remaining TTL, and the user index swaps the ids in the same script.
-- (Prepended: session_index.lua.)
--
-- KEYS[1]  the old session hash
-- KEYS[2]  the new session hash
-- ARGV[1]  key prefix of the user indexes (same hash tag as the keys)
-- ARGV[2]  old id
-- ARGV[3]  new id
-- ARGV[4]  now, Unix ms
-- ARGV[5]  key prefix of the session hashes (same hash tag as the keys)
-- Returns the new hash's field/value pairs, or an empty array when the old one is not live.

local f = redis.call('HMGET', KEYS[1], 'user_id', 'created_at')
if not f[1] then
  return {}
end
local index = ARGV[1] .. f[1]
index_ready(index, ARGV[5])
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[2], 'last_activity_at', ARGV[4])
redis.call('ZREM', index, index_member(f[2], ARGV[2]))
redis.call('ZADD', index, 0, index_member(f[2], ARGV[3]))
return redis.call('HGETALL', KEYS[2])
