-- Confirms a pending action exactly once. The status check and the change are one script, so
-- Redis runs no other command in between, whichever service instance sent it.
-- KEYS[1]: the action's hash.
-- ARGV[1]: confirmed_at (RFC 3339). ARGV[2]: the Idempotency-Key, '' for none.
-- ARGV[3]: tombstone lifetime in ms; 0 means the remaining lifetime, at least ARGV[4] ms.
-- Returns {'confirmed', action} to the winner, {'replayed', action, confirmed_at} to a confirm
-- carrying the winner's key, else {'already_confirmed'}, {'already_cancelled'} or {'missing'}.
local stored = redis.call('HMGET', KEYS[1], 'status', 'action', 'at', 'idem')
local status = stored[1]
if not status then
  return {'missing'}
end
if status == 'pending' then
  local life = tonumber(ARGV[3])
  if life == 0 then
    life = math.max(redis.call('PTTL', KEYS[1]), tonumber(ARGV[4]))
  end
  redis.call('HSET', KEYS[1], 'status', 'confirmed', 'at', ARGV[1], 'idem', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], life)
  return {'confirmed', stored[2]}
end
if status == 'confirmed' then
  if ARGV[2] ~= '' and stored[4] == ARGV[2] then
    return {'replayed', stored[2], stored[3]}
  end
  return {'already_confirmed'}
end
return {'already_cancelled'}
