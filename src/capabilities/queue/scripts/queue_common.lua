-- Shared by every queue script (prepended to each): the queue's keys, Redis's time, and the
-- promotion of due delays and expired leases. Mirrors `QueueState` in src/domain/queue.rs.
--
-- KEYS[1]: the queue's base name; a job is the hash KEYS[1] .. ':job:' .. id, a dedup key the
-- string KEYS[1] .. ':dedup:' .. key (all share the queue's hash tag).
-- KEYS[2..6]: the sorted sets ready (score: (9 - priority) * 2^40 + seq), delayed (when it is
-- due, µs), leased (when the lease ends, µs), dead and done (when, µs); KEYS[7]: `meta` (seq).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local base, ready, delayed, leased, dead, done, meta =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local DONE_RETENTION_US = 3600000000
local DEAD_RETENTION_US = 1209600000000

-- Every key of a queue expires once nothing live needs it: a done job and the done set
-- `DONE_RETENTION_US` after the last ack, a dead one and the dead set `DEAD_RETENTION_US`
-- after the last death, and `meta` (the enqueue sequence) as long as the dead once the queue
-- holds no live job (ready, delayed or leased). Live jobs' keys never expire.
local function keep_for(key, us)
  redis.call('PEXPIRE', key, math.ceil(us / 1000))
end

local function tidy()
  if redis.call('ZCARD', ready) + redis.call('ZCARD', delayed) + redis.call('ZCARD', leased) == 0 then
    keep_for(meta, DEAD_RETENTION_US)
  else
    redis.call('PERSIST', meta)
  end
end

local function num(x)
  return string.format('%.0f', x)
end

local function jkey(id)
  return base .. ':job:' .. id
end

local function make_ready(id)
  local j = redis.call('HMGET', jkey(id), 'priority', 'seq')
  redis.call('HSET', jkey(id), 'state', 'ready')
  redis.call('ZADD', ready, num((9 - tonumber(j[1])) * 1099511627776 + tonumber(j[2])), id)
end

local function backoff_ms(kind, base_ms, max_ms, attempt)
  local delay = base_ms
  if kind == 'exponential' then
    delay = base_ms * 2 ^ math.min(math.max(attempt - 1, 0), 40)
  end
  return math.min(delay, max_ms)
end

-- After an attempt that failed at `at`: a retry `delay_ms` (else the back-off) later, or
-- dead once the attempts are spent. The caller has taken the job out of `leased`.
local function retry_or_bury(id, delay_ms, err, at)
  local j = redis.call('HMGET', jkey(id), 'attempt', 'max', 'bkind', 'bbase', 'bmax')
  local attempt = tonumber(j[1])
  redis.call('HDEL', jkey(id), 'token')
  if err then
    redis.call('HSET', jkey(id), 'error', err)
  end
  if attempt >= tonumber(j[2]) then
    redis.call('HSET', jkey(id), 'state', 'dead', 'at', num(at))
    redis.call('ZADD', dead, num(at), id)
    keep_for(jkey(id), DEAD_RETENTION_US)
    keep_for(dead, DEAD_RETENTION_US)
    return 'dead'
  end
  if delay_ms == nil then
    delay_ms = backoff_ms(j[3], tonumber(j[4]), tonumber(j[5]), attempt)
  end
  if delay_ms == 0 then
    make_ready(id)
    return 'ready'
  end
  local due = at + delay_ms * 1000
  redis.call('HSET', jkey(id), 'state', 'delayed', 'at', num(due))
  redis.call('ZADD', delayed, num(due), id)
  return 'delayed'
end

-- Leases first: a retry whose back-off has already passed is ready at once.
local function promote()
  local expired = redis.call('ZRANGEBYSCORE', leased, '-inf', num(now), 'WITHSCORES', 'LIMIT', 0, 1000)
  for i = 1, #expired, 2 do
    redis.call('ZREM', leased, expired[i])
    retry_or_bury(expired[i], nil, 'the lease expired', tonumber(expired[i + 1]))
  end
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', num(now), 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', delayed, id)
    make_ready(id)
  end
  local old = redis.call('ZRANGEBYSCORE', done, '-inf', num(now - DONE_RETENTION_US), 'LIMIT', 0, 1000)
  for _, id in ipairs(old) do
    redis.call('ZREM', done, id)
    redis.call('DEL', jkey(id))
  end
  local forgotten = redis.call('ZRANGEBYSCORE', dead, '-inf', num(now - DEAD_RETENTION_US), 'LIMIT', 0, 1000)
  for _, id in ipairs(forgotten) do
    redis.call('ZREM', dead, id)
    redis.call('DEL', jkey(id))
  end
  if #expired > 0 then
    tidy()
  end
end

-- The lease's end when `token` holds a live lease on the job, else nil.
local function held(id, token)
  local j = redis.call('HMGET', jkey(id), 'state', 'token', 'at')
  if j[1] == 'leased' and j[2] == token and tonumber(j[3]) > now then
    return tonumber(j[3])
  end
  return nil
end

promote()
