-- Shared by the budget scripts. KEYS: the subject's budget hash (metric -> "limit:period"), the
-- metric's reservations hash (id -> amount, and `~total`), the current day's and month's
-- totals, the metric's reservation expiries (sorted set: id by expiry in µs).
-- Amounts stay below 2^53, exact in Lua's numbers.

-- Totals and the sum of live reservations stay at most 2^53 - 1: exact in Lua's numbers and in
-- every JSON reader, and far from HINCRBY's overflow. Amounts go to Redis commands as the
-- integer strings they were stored as: Redis turns a Lua number into text that may carry an
-- exponent, which HINCRBY refuses.
local MAX = 9007199254740991

-- Adds `amount` to the metric's total in `key`, saturating at MAX.
local function add_total(key, metric, amount)
    local current = tonumber(redis.call('HGET', key, metric) or '0')
    if current + tonumber(amount) > MAX then
        redis.call('HSET', key, metric, string.format('%d', MAX))
    else
        redis.call('HINCRBY', key, metric, amount)
    end
end

-- The negative of an amount stored as an integer string (Redis refuses "-0").
local function negated(amount)
    if amount == '0' then
        return '0'
    end
    return '-' .. amount
end

local function now_us()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Deletes the expired reservations (the expiries sorted set gives them at once) and returns
-- the sum of the live ones, which the reservations hash keeps in its field `~total` (no
-- reservation id can hold a `~`). O(expired), whatever the number of live reservations.
local function reserved_sum(now)
    local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
    for _, id in ipairs(expired) do
        local amount = redis.call('HGET', KEYS[2], id)
        if amount then
            redis.call('HDEL', KEYS[2], id)
            redis.call('HINCRBY', KEYS[2], '~total', negated(amount))
        end
    end
    if #expired > 0 then
        redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
    end
    return tonumber(redis.call('HGET', KEYS[2], '~total') or '0')
end

-- Ends a live reservation: returns its amount, or nil when there is none.
local function take(id)
    local amount = redis.call('HGET', KEYS[2], id)
    if not amount then
        return nil
    end
    redis.call('HDEL', KEYS[2], id)
    redis.call('HINCRBY', KEYS[2], '~total', negated(amount))
    redis.call('ZREM', KEYS[5], id)
    return tonumber(amount)
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
    local reserved = reserved_sum(now)
    local limit, period, used = budget(metric)
    if not limit then
        return {}
    end
    return {limit, period, used, reserved}
end
