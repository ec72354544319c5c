-- Changes a live thread: appends messages, replaces the context, sets relevance.
-- KEYS: state, messages, recent, ids, expiries.
-- ARGV: expected version ('' = any), now ms, thread id, context JSON ('' = unchanged),
--       is_relevant ('' = unchanged, '1', '0'), return the state ('1' | '0'),
--       messages to append (JSON each)...
-- Returns {0} when there is no thread, {-1} when the expected version does not hold, else
-- {1, version, message count} and, when asked, the state's fields and all its messages.
local expected, now, id = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local current = redis.call('HMGET', KEYS[1], 'version', 'ttl')
if current[1] == false then
  return {0}
end
if expected ~= '' and current[1] ~= expected then
  return {-1}
end
push_messages(KEYS[2], 7)
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'context', ARGV[4])
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'relevant', ARGV[5])
end
local ttl = tonumber(current[2])
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'updated', now, 'expires', now + ttl * 1000)
renew_thread(id, now, ttl, true)
local count = redis.call('LLEN', KEYS[2])
if ARGV[6] == '1' then
  return {1, version, count, redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1)}
end
return {1, version, count}
