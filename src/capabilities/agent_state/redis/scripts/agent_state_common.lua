-- Shared by every agent-state script (prepended to each one).
--
-- A tenant's agent-state keys all carry the tenant's hash tag: the state hash and message list
-- of each thread, and the three index sorted sets (recent: score updated_at ms; ids: score 0,
-- paged by lex; expiries: score expires_at ms). Thread keys that a script derives from index
-- members are therefore in the slot of its declared KEYS.

-- The index keys live exactly as long as the tenant's longest-lived thread, so an index can
-- never outlive every thread it lists.
local function arm_indexes(recent, ids, expiries, now)
  local last = redis.call('ZRANGE', expiries, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', recent, ids, expiries)
    return
  end
  local left = math.max(tonumber(last[2]) - now, 1)
  redis.call('PEXPIRE', recent, left)
  redis.call('PEXPIRE', ids, left)
  redis.call('PEXPIRE', expiries, left)
end

local function unindex(recent, ids, expiries, id)
  redis.call('ZREM', recent, id)
  redis.call('ZREM', ids, id)
  redis.call('ZREM', expiries, id)
end

-- Drops the index entries of every thread whose expiry has passed; returns how many.
local function prune_expired(recent, ids, expiries, now)
  local removed = 0
  while true do
    local gone = redis.call('ZRANGEBYSCORE', expiries, '-inf', now, 'LIMIT', 0, 500)
    if #gone == 0 then
      return removed
    end
    redis.call('ZREM', recent, unpack(gone))
    redis.call('ZREM', ids, unpack(gone))
    redis.call('ZREM', expiries, unpack(gone))
    removed = removed + #gone
  end
end

-- RPUSHes ARGV[first..] in chunks (unpack has a stack limit).
local function push_messages(list, first)
  local i = first
  while i <= #ARGV do
    local last = math.min(i + 199, #ARGV)
    redis.call('RPUSH', list, unpack(ARGV, i, last))
    i = last + 1
  end
end

-- Gives both keys of a thread the same TTL and records it in the indexes.
-- KEYS: state, messages, recent, ids, expiries.
local function renew_thread(id, now, ttl_seconds, touch_recent)
  local ms = ttl_seconds * 1000
  redis.call('PEXPIRE', KEYS[1], ms)
  redis.call('PEXPIRE', KEYS[2], ms)
  if touch_recent then
    redis.call('ZADD', KEYS[3], now, id)
  end
  redis.call('ZADD', KEYS[4], 0, id)
  redis.call('ZADD', KEYS[5], now + ms, id)
  arm_indexes(KEYS[3], KEYS[4], KEYS[5], now)
end
