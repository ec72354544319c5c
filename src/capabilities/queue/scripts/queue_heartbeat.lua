-- ARGV: job id, lease token, visibility (µs). Returns the lease's new end (µs) as a string, or
-- '' when the token holds no live lease.
local id = ARGV[1]
if not held(id, ARGV[2]) then
  return ''
end
local until_us = now + tonumber(ARGV[3])
redis.call('HSET', jkey(id), 'at', num(until_us))
redis.call('ZADD', leased, num(until_us), id)
return num(until_us)
