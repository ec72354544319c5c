-- Second half of compare-and-set: writes only if the value is still exactly the bytes the
-- caller read and judged equal to `expected`; 0 means someone wrote in between.
-- KEYS[1] the value; ARGV[1] the bytes read; ARGV[2] the new value; ARGV[3] TTL ("0": none)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[3] ~= '0' then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
