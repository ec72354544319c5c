-- Shared by the budget scripts. KEYS: the subject's budget hash (metric -> "limit:period"), the
-- metric's reservations hash (id -> "amount:expires_us"), the current day's and month's totals.
-- Amounts stay below 2^53, exact in Lua's numbers.

local function now_us()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Deletes expired reservations; returns the sum of the live ones.
local function reserved_sum(key, now)
    local entries = redis.call('HGETALL', key)
    local sum = 0
    for i = 1, #entries, 2 do
        local amount, expires = string.match(entries[i + 1], '^(%d+):(%d+)$')
        if tonumber(expires) <= now then
            redis.call('HDEL', key, entries[i])
        else
            sum = sum + tonumber(amount)
        end
    end
    return sum
end

-- The metric's budget: limit, period, used in the current period (nil without a budget).
local function budget(metric)
    local rule = redis.call('HGET', KEYS[1], metric)
    if not rule then
        return nil
    end
    local limit, period = string.match(rule, '^(%d+):(%a+)$')
    local totals = KEYS[3]
    if period == 'month' then
        totals = KEYS[4]
    end
    local used = tonumber(redis.call('HGET', totals, metric) or '0')
    return tonumber(limit), period, used
end

-- {limit, period, used, reserved} of the metric's budget, or {} without one.
local function status(metric, now)
    local reserved = reserved_sum(KEYS[2], now)
    local limit, period, used = budget(metric)
    if not limit then
        return {}
    end
    return {limit, period, used, reserved}
end
