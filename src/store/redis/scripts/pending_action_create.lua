-- Creates a pending action unless its token exists, in one atomic step.
-- KEYS[1]: the action's hash. ARGV[1]: the action as JSON. ARGV[2]: its TTL in seconds.
-- Returns 1 when created, 0 when the token was taken (then nothing is written).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'action', ARGV[1], 'status', 'pending')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
