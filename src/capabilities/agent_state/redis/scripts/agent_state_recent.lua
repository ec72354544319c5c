-- The most recently updated live threads, newest first.
-- KEYS: recent, ids, expiries. ARGV: now ms, limit, state key prefix, messages key prefix.
-- Expired entries are pruned first; an entry whose state hash is gone anyway (deleted behind
-- the service's back, evicted) is pruned when met. Returns {{id, updated ms, message count,
-- is_relevant}, ...}.
local now, limit, state_prefix, messages_prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local removed = prune_expired(KEYS[1], KEYS[2], KEYS[3], now)
local out, start = {}, 0
while #out < limit do
  local batch = redis.call('ZREVRANGE', KEYS[1], start, start + limit - 1)
  if #batch == 0 then
    break
  end
  local dropped = 0
  for _, id in ipairs(batch) do
    local fields = redis.call('HMGET', state_prefix .. id, 'updated', 'relevant')
    if fields[1] == false then
      unindex(KEYS[1], KEYS[2], KEYS[3], id)
      dropped = dropped + 1
      removed = removed + 1
    elseif #out < limit then
      out[#out + 1] = {id, tonumber(fields[1]), redis.call('LLEN', messages_prefix .. id), fields[2]}
    end
  end
  start = start + #batch - dropped
end
-- Only a removal can shorten the indexes' lifetime; a read that removed nothing writes nothing.
if removed > 0 then
  arm_indexes(KEYS[1], KEYS[2], KEYS[3], now)
end
return out
