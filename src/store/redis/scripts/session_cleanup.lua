-- Drops from a user's index the ids whose session has expired; returns how many.
--
-- KEYS[1]  the user's index
-- ARGV[1]  key prefix of the session hashes (same hash tag as KEYS[1])

local removed = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    redis.call('SREM', KEYS[1], id)
    removed = removed + 1
  end
end
return removed
