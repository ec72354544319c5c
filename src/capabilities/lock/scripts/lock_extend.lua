-- A new expiry for the holder of KEYS[1] (mirrors `LockState::extend`).
-- ARGV: token, ttl (µs), record retention (ms). Returns the new expiry (µs), or -1: lost.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'token', 'expires')
if h[1] ~= ARGV[1] or tonumber(h[2] or '0') <= now then
  return -1
end
local until_us = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'expires', string.format('%.0f', until_us))
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000) + tonumber(ARGV[3]))
return until_us
