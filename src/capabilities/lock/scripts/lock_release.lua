-- Frees KEYS[1] when ARGV[1] holds it (mirrors `LockState::release`), keeping the fencing
-- counter, and publishes the release (ARGV[3]) on ARGV[2] so every instance wakes its waiters.
-- Returns 1 when released, 0 when the token did not hold the lock (nothing changes).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'token', 'expires')
if h[1] ~= ARGV[1] or tonumber(h[2] or '0') <= now then
  return 0
end
redis.call('HDEL', KEYS[1], 'token', 'owner', 'expires')
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
