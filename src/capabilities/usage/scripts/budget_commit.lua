-- Ends a live reservation and records the amount used (at most what was reserved) in the
-- current day's and month's totals, in one step.
-- ARGV: metric, reservation id, amount, day TTL ms, month TTL ms.
-- Returns {1, returned}, {-1, reserved} (more than reserved: nothing changed) or {0} (no live
-- reservation).
reserved_sum(now_us())
local reserved = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '-1')
if reserved < 0 then
    return {0}
end
local amount = tonumber(ARGV[3])
if amount > reserved then
    return {-1, reserved}
end
take(ARGV[2])
add_total(KEYS[3], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
add_total(KEYS[4], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[4], ARGV[5])
return {1, reserved - amount}
