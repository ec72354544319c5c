-- ARGV: visibility (µs), then one lease token per job wanted.
-- Returns {µs until a delay ends or a lease expires (-1: none), then per job: id, payload,
-- attempt, token, lease end (µs)}, all as strings.
local visibility = tonumber(ARGV[1])
local out = {''}
local ids = redis.call('ZRANGE', ready, 0, #ARGV - 2)
for i, id in ipairs(ids) do
  redis.call('ZREM', ready, id)
  local until_us = now + visibility
  local attempt = redis.call('HINCRBY', jkey(id), 'attempt', 1)
  redis.call('HSET', jkey(id), 'state', 'leased', 'at', num(until_us), 'token', ARGV[1 + i])
  redis.call('ZADD', leased, num(until_us), id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', jkey(id), 'payload')
  out[#out + 1] = tostring(attempt)
  out[#out + 1] = ARGV[1 + i]
  out[#out + 1] = num(until_us)
end
local next_change = -1
for _, set in ipairs({delayed, leased}) do
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if first[2] then
    local wait = math.max(tonumber(first[2]) - now, 0)
    if next_change < 0 or wait < next_change then
      next_change = wait
    end
  end
end
out[1] = num(next_change)
return out
