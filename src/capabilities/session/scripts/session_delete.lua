-- Deletes a session and its entry in the user index, atomically.
-- (Prepended: session_index.lua.)
--
-- KEYS[1]  the session hash
-- ARGV[1]  key prefix of the user indexes (same hash tag as KEYS[1])
-- ARGV[2]  the session id
-- ARGV[3]  key prefix of the session hashes (same hash tag)
-- Returns 1 when a live session was deleted, else 0.

local f = redis.call('HMGET', KEYS[1], 'user_id', 'created_at')
if not f[1] then
  return 0
end
local index = ARGV[1] .. f[1]
index_ready(index, ARGV[3])
redis.call('UNLINK', KEYS[1])
redis.call('ZREM', index, index_member(f[2], ARGV[2]))
return 1
