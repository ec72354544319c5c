-- Removes a thread and its index entries.
-- KEYS: state, messages, recent, ids, expiries. ARGV: now ms, thread id.
-- Returns 1 when a live thread existed, else 0.
local now, id = tonumber(ARGV[1]), ARGV[2]
local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
unindex(KEYS[3], KEYS[4], KEYS[5], id)
arm_indexes(KEYS[3], KEYS[4], KEYS[5], now)
return existed
