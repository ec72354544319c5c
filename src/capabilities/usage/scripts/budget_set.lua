-- ARGV: metric, limit, period. Sets the budget; returns its status.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
return status(ARGV[1], now_us())
