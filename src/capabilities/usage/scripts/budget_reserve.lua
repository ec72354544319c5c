-- Holds an amount against the metric's budget when it fits: used + reserved + amount <= limit.
-- ARGV: metric, reservation id, amount, ttl ms.
-- Returns {1, remaining (-1: no budget), expires_us} or {0, remaining}.
local now = now_us()
local amount = tonumber(ARGV[3])
local reserved = reserved_sum(now)
local limit, _, used = budget(ARGV[1])
if reserved + amount > MAX then
    -- More than 2^53 - 1 held at once: the service's ceiling, budget or not.
    return {0, MAX - reserved}
end
local remaining = -1
if limit then
    remaining = limit - used - reserved
    if remaining < 0 then
        remaining = 0
    end
    if used + reserved + amount > limit then
        return {0, remaining}
    end
    remaining = remaining - amount
end
local expires = now + tonumber(ARGV[4]) * 1000
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[2], '~total', ARGV[3])
redis.call('ZADD', KEYS[5], expires, ARGV[2])
-- Both outlive their longest reservation (one day).
redis.call('PEXPIRE', KEYS[2], 86400000 + 60000)
redis.call('PEXPIRE', KEYS[5], 86400000 + 60000)
return {1, remaining, expires}
