-- Holds an amount against the metric's budget when it fits: used + reserved + amount <= limit.
-- ARGV: metric, reservation id, amount, ttl ms.
-- Returns {1, remaining (-1: no budget), expires_us} or {0, remaining}.
local now = now_us()
local amount = tonumber(ARGV[3])
local reserved = reserved_sum(KEYS[2], now)
local limit, _, used = budget(ARGV[1])
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
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. ':' .. string.format('%d', expires))
-- The hash outlives its longest reservation (one day).
redis.call('PEXPIRE', KEYS[2], 86400000 + 60000)
return {1, remaining, expires}
