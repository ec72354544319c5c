-- ARGV: job id, channel, message. Makes a dead job ready with its attempts back.
-- Returns 1, or 0 when the job is not dead.
local id = ARGV[1]
if redis.call('HGET', jkey(id), 'state') ~= 'dead' then
  return 0
end
redis.call('ZREM', dead, id)
redis.call('HSET', jkey(id), 'attempt', 0)
redis.call('PERSIST', jkey(id))
redis.call('PERSIST', meta)
make_ready(id)
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
