-- Creates an action unless its token exists, in one atomic step: `pending` for a new token, or
-- already confirmed or cancelled when an action is handed over from the other backend.
-- KEYS[1]: the action's hash. ARGV[1]: the action as JSON. ARGV[2]: its TTL in seconds.
-- ARGV[3]: its status. ARGV[4]: when it was confirmed or cancelled (RFC 3339), '' if pending.
-- Returns 1 when created, 0 when the token was taken (then nothing is written).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'action', ARGV[1], 'status', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'at', ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
