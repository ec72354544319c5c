-- Deletes a session and its entry in the user index, atomically.
--
-- KEYS[1]  the session hash
-- ARGV[1]  key prefix of the user indexes (same hash tag as KEYS[1])
-- ARGV[2]  the session id
-- Returns 1 when a live session was deleted, else 0.

local user = redis.call('HGET', KEYS[1], 'user_id')
if not user then
  return 0
end
redis.call('UNLINK', KEYS[1])
redis.call('SREM', ARGV[1] .. user, ARGV[2])
return 1
