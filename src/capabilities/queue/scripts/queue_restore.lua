-- Writes a job as a backup holds it (mirrors `QueueState::restore`): a leased job goes back to
-- ready, a done job is not written.
-- ARGV: id, only if absent ('1' | '0'), payload, priority, attempt, max attempts, backoff kind,
-- base_ms, max_ms, enqueued (µs), seq, state, at (µs), last error ('' for none).
-- Returns 1 when written, 0 when not.
local id, state = ARGV[1], ARGV[12]
if state == 'done' or (ARGV[2] == '1' and redis.call('EXISTS', jkey(id)) == 1) then
  return 0
end
for _, set in ipairs({ready, delayed, leased, dead, done}) do
  redis.call('ZREM', set, id)
end
redis.call('DEL', jkey(id))
if state == 'leased' then
  state = 'ready'
end
redis.call('HSET', jkey(id), 'payload', ARGV[3], 'priority', ARGV[4], 'attempt', ARGV[5],
  'max', ARGV[6], 'bkind', ARGV[7], 'bbase', ARGV[8], 'bmax', ARGV[9], 'enq', ARGV[10],
  'seq', ARGV[11], 'state', state, 'at', ARGV[13])
if ARGV[14] ~= '' then
  redis.call('HSET', jkey(id), 'error', ARGV[14])
end
if tonumber(redis.call('HGET', meta, 'seq') or '0') < tonumber(ARGV[11]) then
  redis.call('HSET', meta, 'seq', ARGV[11])
end
if state == 'delayed' then
  redis.call('ZADD', delayed, ARGV[13], id)
elseif state == 'dead' then
  redis.call('ZADD', dead, ARGV[13], id)
  keep_for(jkey(id), DEAD_RETENTION_US)
  keep_for(dead, DEAD_RETENTION_US)
else
  make_ready(id)
end
tidy()
return 1
