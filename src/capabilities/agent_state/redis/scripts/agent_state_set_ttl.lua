-- Gives a live thread a new TTL from now (not a change of the state: version stays).
-- KEYS: state, messages, recent, ids, expiries. ARGV: now ms, ttl seconds, thread id.
-- Returns 1, or 0 when there is no thread.
local now, ttl, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'ttl', ttl, 'expires', now + ttl * 1000)
renew_thread(id, now, ttl, false)
return 1
