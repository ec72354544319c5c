-- ARGV: job id, lease token, delay (ms, '' for the back-off), error ('' for none).
-- Returns the job's state after ('ready', 'delayed' or 'dead'), or '' when the token holds no
-- live lease.
local id = ARGV[1]
if not held(id, ARGV[2]) then
  return ''
end
redis.call('ZREM', leased, id)
local delay = nil
if ARGV[3] ~= '' then
  delay = tonumber(ARGV[3])
end
local err = nil
if ARGV[4] ~= '' then
  err = ARGV[4]
end
local state = retry_or_bury(id, delay, err, now)
tidy()
return state
