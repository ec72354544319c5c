-- Signs a user out everywhere: deletes every session in the index, then the index, atomically.
--
-- KEYS[1]  the user's index
-- ARGV[1]  key prefix of the session hashes (same hash tag as KEYS[1])
-- Returns how many live sessions were deleted.

local deleted = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  deleted = deleted + redis.call('UNLINK', ARGV[1] .. id)
end
redis.call('UNLINK', KEYS[1])
return deleted
