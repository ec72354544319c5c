-- One attempt to take a lock (KEYS[1], its hash), at Redis's time; mirrors
-- `LockState::acquire` in src/domain/lock.rs.
-- ARGV: token, owner ('' for none), ttl (µs), record retention (ms).
-- Returns {1, fencing_token, expires_at_us} or {0, retry_after_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'token', 'expires', 'fence', 'checked')
local expires = tonumber(h[2] or '0')
if h[1] and expires > now then
  return {0, expires - now}
end
local fence = math.max(tonumber(h[3] or '0') + 1, tonumber(h[4] or '0') + 1, now)
local until_us = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'owner', ARGV[2],
  'expires', string.format('%.0f', until_us), 'fence', string.format('%.0f', fence))
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) / 1000) + tonumber(ARGV[4]))
return {1, fence, until_us}
