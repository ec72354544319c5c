-- ARGV: id, payload, priority, delay (µs), max_attempts, backoff kind, base_ms, max_ms,
-- dedup key ('' for none), dedup window (ms), channel, message.
-- Returns {1, id} when created, {0, first id} when the dedup key names a live job.
local id = ARGV[1]
if ARGV[9] ~= '' then
  local existing = redis.call('GET', base .. ':dedup:' .. ARGV[9])
  if existing then
    return {0, existing}
  end
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('PERSIST', meta)
local delay = tonumber(ARGV[4])
redis.call('HSET', jkey(id), 'payload', ARGV[2], 'priority', ARGV[3], 'attempt', 0,
  'max', ARGV[5], 'bkind', ARGV[6], 'bbase', ARGV[7], 'bmax', ARGV[8], 'enq', num(now),
  'seq', seq, 'state', 'delayed', 'at', num(now + delay))
if delay == 0 then
  make_ready(id)
else
  redis.call('ZADD', delayed, num(now + delay), id)
end
if ARGV[9] ~= '' then
  redis.call('SET', base .. ':dedup:' .. ARGV[9], id, 'PX', ARGV[10])
end
redis.call('PUBLISH', ARGV[11], ARGV[12])
return {1, id}
