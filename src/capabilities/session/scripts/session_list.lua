-- One page of a user's live sessions in listing order, strictly after a place. Entries whose
-- session has expired are dropped from the index as they are met.
-- (Prepended: session_index.lua.)
--
-- KEYS[1]  the user's index
-- ARGV[1]  key prefix of the session hashes (same hash tag as KEYS[1])
-- ARGV[2]  created_at of the place to resume after, Unix ms ('' = from the start)
-- ARGV[3]  session id of that place
-- ARGV[4]  the most sessions to return
-- Returns {more (1 | 0), {{id, field, value, ...}, ...}}.

index_ready(KEYS[1], ARGV[1])
local limit = tonumber(ARGV[4])
local from = '-'
if ARGV[2] ~= '' then
  from = '(' .. index_member(ARGV[2], ARGV[3])
end
local out = {}
local more = 0
while more == 0 do
  local want = limit - #out
  if want == 0 then
    want = 1
  end
  local batch = redis.call('ZRANGE', KEYS[1], from, '+', 'BYLEX', 'LIMIT', 0, want)
  if #batch == 0 then
    break
  end
  for _, member in ipairs(batch) do
    local id = member_id(member)
    local all = redis.call('HGETALL', ARGV[1] .. id)
    if #all == 0 then
      redis.call('ZREM', KEYS[1], member)
    elseif #out == limit then
      more = 1
      break
    else
      table.insert(all, 1, id)
      out[#out + 1] = all
    end
  end
  from = '(' .. batch[#batch]
end
return {more, out}
