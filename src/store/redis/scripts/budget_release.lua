-- Ends a live reservation, returning all of it. ARGV: metric, reservation id.
-- Returns 1 when it was live, else 0.
reserved_sum(KEYS[2], now_us())
return redis.call('HDEL', KEYS[2], ARGV[2])
