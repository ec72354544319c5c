-- Drops from a user's index the entries whose session has expired; returns how many.
-- (Prepended: session_index.lua.)
--
-- KEYS[1]  the user's index
-- ARGV[1]  key prefix of the session hashes (same hash tag as KEYS[1])

index_ready(KEYS[1], ARGV[1])
local removed = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. member_id(member)) == 0 then
    redis.call('ZREM', KEYS[1], member)
    removed = removed + 1
  end
end
return removed
