-- Counts a usage event once: its id's dedup key first (SET NX PX), then the metric's total in
-- the event's day and month.
-- KEYS: dedup key, day hash, month hash. ARGV: metric, amount, dedup window ms, day TTL ms,
-- month TTL ms. Returns 1 when counted, 0 when the id was seen within the window.
-- (budget_common.lua comes first, for add_total.)
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then
    return 0
end
add_total(KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
add_total(KEYS[3], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return 1
