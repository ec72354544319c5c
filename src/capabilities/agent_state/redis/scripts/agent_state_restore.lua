-- Writes a whole thread exactly as a backup holds it (version, times, messages): a restore.
-- KEYS: state, messages, recent, ids, expiries.
-- ARGV: only if absent ('1' | '0'), now ms, created ms, updated ms, expires ms, version,
--       ttl seconds, thread id, context JSON, metadata JSON, is_relevant ('1' | '0'),
--       messages (JSON each)...
-- Returns 1 when written, 0 when a live thread was kept or the thread's time has passed.
local now, expires, id = tonumber(ARGV[2]), tonumber(ARGV[5]), ARGV[8]
if expires <= now then
  return 0
end
if ARGV[1] == '1' then
  local current = redis.call('HGET', KEYS[1], 'expires')
  if current and tonumber(current) > now then
    return 0
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'context', ARGV[9], 'metadata', ARGV[10], 'relevant', ARGV[11],
  'created', ARGV[3], 'updated', ARGV[4], 'expires', expires, 'version', ARGV[6], 'ttl', ARGV[7])
push_messages(KEYS[2], 12)
local left = expires - now
redis.call('PEXPIRE', KEYS[1], left)
redis.call('PEXPIRE', KEYS[2], left)
redis.call('ZADD', KEYS[3], tonumber(ARGV[4]), id)
redis.call('ZADD', KEYS[4], 0, id)
redis.call('ZADD', KEYS[5], expires, id)
arm_indexes(KEYS[3], KEYS[4], KEYS[5], now)
return 1
