-- Moves a live session to a new id and drops the old one, in one atomic step: RENAME keeps the
-- content and the remaining TTL, and the user index swaps the ids in the same script.
--
-- KEYS[1]  the old session hash
-- KEYS[2]  the new session hash
-- ARGV[1]  key prefix of the user indexes (same hash tag as the keys)
-- ARGV[2]  old id
-- ARGV[3]  new id
-- ARGV[4]  now, Unix ms
-- Returns the new hash's field/value pairs, or an empty array when the old one is not live.

local user = redis.call('HGET', KEYS[1], 'user_id')
if not user then
  return {}
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[2], 'last_activity_at', ARGV[4])
local index = ARGV[1] .. user
redis.call('SREM', index, ARGV[2])
redis.call('SADD', index, ARGV[3])
return redis.call('HGETALL', KEYS[2])
