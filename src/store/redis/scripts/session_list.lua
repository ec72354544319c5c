-- A user's live sessions; ids whose session has expired are dropped from the index.
--
-- KEYS[1]  the user's index
-- ARGV[1]  key prefix of the session hashes (same hash tag as KEYS[1])
-- Returns one array per live session: {id, field, value, ...}.

local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local all = redis.call('HGETALL', ARGV[1] .. id)
  if #all == 0 then
    redis.call('SREM', KEYS[1], id)
  else
    table.insert(all, 1, id)
    table.insert(out, all)
  end
end
return out
