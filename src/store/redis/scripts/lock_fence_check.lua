-- Accepts ARGV[1] as a fencing token of KEYS[1] when no later grant or check exists, raising
-- the mark to it (mirrors `LockState::check_fence`). ARGV[2]: record retention (ms).
-- Returns {1, token} or {0, highest}.
local token = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'fence', 'checked')
local highest = math.max(tonumber(h[1] or '0'), tonumber(h[2] or '0'))
if token < highest then
  return {0, highest}
end
redis.call('HSET', KEYS[1], 'checked', ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, token}
