-- Deletes every job of the queue and its sets. Returns how many jobs. (Dedup keys expire with
-- their window.)
local n = 0
for _, set in ipairs({ready, delayed, leased, dead, done}) do
  for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    redis.call('DEL', jkey(id))
    n = n + 1
  end
  redis.call('DEL', set)
end
redis.call('DEL', meta)
return n
