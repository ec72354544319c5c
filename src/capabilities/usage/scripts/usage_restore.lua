-- Sets one totals bucket from a backup.
-- KEYS[1]: the bucket's hash. ARGV[1]: how long it lives at least (ms); ARGV[2]: '1' to keep
-- the higher of both amounts, '0' to set the backup's; then metric, amount pairs.
-- Returns how many totals changed.
local changed = 0
for i = 3, #ARGV, 2 do
  local held = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  local amount = tonumber(ARGV[i + 1])
  if ARGV[2] == '1' and held > amount then
    amount = held
  end
  if amount ~= held then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    changed = changed + 1
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return changed
