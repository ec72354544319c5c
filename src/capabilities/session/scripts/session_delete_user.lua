-- Signs a user out everywhere: deletes every session in the index, then the index, atomically.
-- (Prepended: session_index.lua.)
--
-- KEYS[1]  the user's index
-- ARGV[1]  key prefix of the session hashes (same hash tag as KEYS[1])
-- Returns how many live sessions were deleted.

index_ready(KEYS[1], ARGV[1])
local deleted = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  deleted = deleted + redis.call('UNLINK', ARGV[1] .. member_id(member))
end
redis.call('UNLINK', KEYS[1])
return deleted
