-- ARGV: job id, lease token. Returns 1 when acked, 0 when the token holds no live lease.
local id = ARGV[1]
if not held(id, ARGV[2]) then
  return 0
end
redis.call('ZREM', leased, id)
redis.call('HSET', jkey(id), 'state', 'done', 'at', num(now))
redis.call('HDEL', jkey(id), 'token')
redis.call('ZADD', done, num(now), id)
keep_for(jkey(id), DONE_RETENTION_US)
keep_for(done, DONE_RETENTION_US)
tidy()
return 1
