-- A rate-limit check: every rule of one key assessed at Redis's time, and the cost consumed
-- from all of them only when each allows (all-or-nothing), in one atomic step. Mirrors
-- `decide` in src/domain/rate_limit.rs line for line.
--
-- KEYS[1]: the key's hash: per rule state id, a sliding window's total cost, a fixed window's
--          "window:count" or a token bucket's theoretical arrival time (µs); `seq` numbers
--          the members of the sliding logs.
-- KEYS[1 + i]: rule i's sliding log, a sorted set of "seq:cost" members scored by time (µs);
--          KEYS[1] .. ':' .. state id (unused for the other algorithms).
-- ARGV[1]: "consume" or "peek"; ARGV[2]: the cost (0: a peek of one unit);
-- then 6 per rule: kind (sw, fw or tb), state id, limit, window (µs), burst, interval (µs).
--
-- Returns {allowed, then per rule: allowed, remaining, reset_after_us, retry_after_us or -1}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[2])
local consume = ARGV[1] == 'consume' and cost > 0
local assessed = math.max(cost, 1)
local h = KEYS[1]
local n = (#ARGV - 2) / 6

local function num(x)
  return string.format('%.0f', x)
end

local function cost_of(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

local rules = {}
local all = true
for i = 1, n do
  local b = 2 + (i - 1) * 6
  local r = {
    kind = ARGV[b + 1], id = ARGV[b + 2], limit = tonumber(ARGV[b + 3]),
    window = tonumber(ARGV[b + 4]), burst = tonumber(ARGV[b + 5]),
    interval = tonumber(ARGV[b + 6]), z = KEYS[1 + i],
  }
  local stored = redis.call('HGET', h, r.id)
  if r.kind == 'sw' then
    -- A log that expired took its total with it.
    local total = 0
    if stored and redis.call('EXISTS', r.z) == 1 then
      total = tonumber(stored)
    end
    local expired = redis.call('ZRANGEBYSCORE', r.z, '-inf', num(now - r.window))
    for _, member in ipairs(expired) do
      total = total - cost_of(member)
    end
    r.expired = #expired
    r.total = total
    local excess = total + assessed - r.limit
    if excess > 0 then
      -- The entry whose expiry frees the excess-th unit, oldest first.
      local live = redis.call('ZRANGEBYSCORE', r.z, '(' .. num(now - r.window), '+inf',
        'WITHSCORES', 'LIMIT', 0, excess)
      local freed, at = 0, now
      for j = 1, #live, 2 do
        freed = freed + cost_of(live[j])
        if freed >= excess then
          at = tonumber(live[j + 1])
          break
        end
      end
      r.wait = math.max(at + r.window - now, 0)
    end
  elseif r.kind == 'fw' then
    local current = math.floor(now / r.window)
    local count = 0
    if stored then
      local w, c = string.match(stored, '^(%d+):(%d+)$')
      if tonumber(w) == current then
        count = tonumber(c)
      end
    end
    r.current, r.count = current, count
    if count + assessed > r.limit then
      r.wait = (current + 1) * r.window - now
    end
  else
    r.tat = math.max(tonumber(stored or '0'), now)
    local allow_at = r.tat + assessed * r.interval - r.burst * r.interval
    if allow_at > now then
      r.wait = allow_at - now
    end
  end
  if r.wait then
    all = false
  end
  rules[i] = r
end

local write = consume and all
local out = {all and 1 or 0}
local life = 0
for _, r in ipairs(rules) do
  local remaining, reset
  if r.kind == 'sw' then
    if write then
      if r.expired > 0 then
        redis.call('ZREMRANGEBYSCORE', r.z, '-inf', num(now - r.window))
      end
      local seq = redis.call('HINCRBY', h, 'seq', 1)
      redis.call('ZADD', r.z, num(now), seq .. ':' .. cost)
      redis.call('PEXPIRE', r.z, math.ceil(r.window / 1000))
      r.total = r.total + cost
      redis.call('HSET', h, r.id, num(r.total))
    end
    remaining = math.max(r.limit - r.total, 0)
    reset = 0
    if r.total > 0 then
      local newest = redis.call('ZREVRANGE', r.z, 0, 0, 'WITHSCORES')
      reset = math.max(tonumber(newest[2]) + r.window - now, 0)
    end
  elseif r.kind == 'fw' then
    if write then
      r.count = r.count + cost
      redis.call('HSET', h, r.id, num(r.current) .. ':' .. num(r.count))
    end
    remaining = math.max(r.limit - r.count, 0)
    reset = 0
    if r.count > 0 then
      reset = (r.current + 1) * r.window - now
    end
  else
    if write then
      r.tat = r.tat + cost * r.interval
      redis.call('HSET', h, r.id, num(r.tat))
    end
    reset = r.tat - now
    remaining = math.max(math.floor((r.burst * r.interval - reset) / r.interval), 0)
  end
  life = math.max(life, reset)
  out[#out + 1] = r.wait and 0 or 1
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = r.wait or -1
end

if write then
  -- The hash lives as long as its longest rule, including rules this check did not name.
  local ms = math.ceil(life / 1000)
  if redis.call('PTTL', h) < ms then
    redis.call('PEXPIRE', h, ms)
  end
end
return out
