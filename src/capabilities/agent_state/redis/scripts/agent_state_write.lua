-- Creates or replaces a whole thread.
-- KEYS: state, messages, recent, ids, expiries.
-- ARGV: mode ('create' | 'replace'), expected version ('' = any), now ms, ttl seconds,
--       thread id, context JSON, metadata JSON, is_relevant ('1' | '0'), messages (JSON each)...
-- Returns {0} when creating over a live thread, {-1} when the expected version does not hold,
-- else {1, version, created ms, 1 if created}.
local mode, expected, now, ttl, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local current = redis.call('HMGET', KEYS[1], 'version', 'created')
local exists = current[1] ~= false
if mode == 'create' and exists then
  return {0}
end
if expected ~= '' and (not exists or current[1] ~= expected) then
  return {-1}
end
local version, created = 1, now
if exists then
  version = tonumber(current[1]) + 1
  created = tonumber(current[2])
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'context', ARGV[6], 'metadata', ARGV[7], 'relevant', ARGV[8],
  'created', created, 'updated', now, 'expires', now + ttl * 1000, 'version', version, 'ttl', ttl)
push_messages(KEYS[2], 9)
renew_thread(id, now, ttl, true)
return {1, version, created, exists and 0 or 1}
