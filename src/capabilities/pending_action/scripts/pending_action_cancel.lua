-- Cancels a pending action in one atomic step, so no confirm can win after it.
-- KEYS[1]: the action's hash.
-- ARGV[1]: cancelled_at (RFC 3339).
-- ARGV[2]: tombstone lifetime in ms; 0 means the remaining lifetime, at least ARGV[3] ms.
-- Returns 'cancelled_now' when this call cancelled it, else the status it already had
-- ('confirmed' or 'cancelled'), or 'missing'.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return 'missing'
end
if status ~= 'pending' then
  return status
end
local life = tonumber(ARGV[2])
if life == 0 then
  life = math.max(redis.call('PTTL', KEYS[1]), tonumber(ARGV[3]))
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'at', ARGV[1])
redis.call('PEXPIRE', KEYS[1], life)
return 'cancelled_now'
