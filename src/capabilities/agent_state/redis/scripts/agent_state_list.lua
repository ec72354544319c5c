-- One page of live thread ids in byte order, strictly after a given id.
-- KEYS: recent, ids, expiries. ARGV: now ms, after ('' = from the start), limit, state key prefix.
-- Paging by the last id returned (ZRANGE BYLEX on a set whose scores are all 0) gives every
-- thread exactly once, unlike SCAN, which may repeat keys. Expired entries are pruned first,
-- entries whose state hash is gone anyway when met. Returns {more (1 | 0), {id, ...}}.
local now, after, limit, state_prefix = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local removed = prune_expired(KEYS[1], KEYS[2], KEYS[3], now)
local from = '-'
if after ~= '' then
  from = '(' .. after
end
local out = {}
while #out < limit do
  local batch = redis.call('ZRANGE', KEYS[2], from, '+', 'BYLEX', 'LIMIT', 0, limit - #out)
  if #batch == 0 then
    break
  end
  for _, id in ipairs(batch) do
    if redis.call('EXISTS', state_prefix .. id) == 1 then
      out[#out + 1] = id
    else
      unindex(KEYS[1], KEYS[2], KEYS[3], id)
      removed = removed + 1
    end
  end
  from = '(' .. batch[#batch]
end
local more = 0
while more == 0 do
  local following = redis.call('ZRANGE', KEYS[2], from, '+', 'BYLEX', 'LIMIT', 0, 1)
  if #following == 0 then
    break
  end
  if redis.call('EXISTS', state_prefix .. following[1]) == 1 then
    more = 1
  else
    unindex(KEYS[1], KEYS[2], KEYS[3], following[1])
    removed = removed + 1
  end
end
-- Only a removal can shorten the indexes' lifetime; a read that removed nothing writes nothing.
if removed > 0 then
  arm_indexes(KEYS[1], KEYS[2], KEYS[3], now)
end
return {more, out}
