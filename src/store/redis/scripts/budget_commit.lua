-- Ends a live reservation and records the amount used (at most what was reserved) in the
-- current day's and month's totals, in one step.
-- ARGV: metric, reservation id, amount, day TTL ms, month TTL ms.
-- Returns {1, returned}, {-1, reserved} (more than reserved: nothing changed) or {0} (no live
-- reservation).
local now = now_us()
reserved_sum(KEYS[2], now)
local entry = redis.call('HGET', KEYS[2], ARGV[2])
if not entry then
    return {0}
end
local reserved = tonumber(string.match(entry, '^(%d+):'))
local amount = tonumber(ARGV[3])
if amount > reserved then
    return {-1, reserved}
end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('HINCRBY', KEYS[4], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[4], ARGV[5])
return {1, reserved - amount}
