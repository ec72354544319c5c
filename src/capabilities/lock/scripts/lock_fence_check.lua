-- Accepts ARGV[1] as a fencing token of KEYS[1] when no later grant or check exists and a
-- grant can have issued it, raising the mark to it (mirrors `LockState::check_fence`).
-- ARGV[2]: record retention (ms); ARGV[3]: how far above Redis's clock the token may be (µs,
-- `Fence::slack_us`); ARGV[4]: the largest token there can be (2^53 - 1).
-- Returns {1, token}, {0, highest} (stale) or {2, ceiling} (no grant issued it).
local token = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'fence', 'checked')
local highest = math.max(tonumber(h[1] or '0'), tonumber(h[2] or '0'))
if token < highest then
  return {0, highest}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ceiling = math.min(math.max(highest, now + tonumber(ARGV[3])), tonumber(ARGV[4]))
if token > ceiling then
  return {2, ceiling}
end
redis.call('HSET', KEYS[1], 'checked', ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, token}
