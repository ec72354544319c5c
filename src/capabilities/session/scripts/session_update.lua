-- Reads or changes one live session in one atomic step, mirroring `Session::touch` and
-- `Session::apply`. Existence (and the If-Match version) is checked in the same script as the
-- write, so no write can bring back a session that was deleted or has expired.
-- (Prepended: session_merge.lua.)
--
-- KEYS[1]  the session hash
-- ARGV[1]  'touch' | 'patch' | 'context' | 'extend'
-- ARGV[2]  now, Unix ms
-- ARGV[3]  '1' when expiry is rolling
-- ARGV[4]  max lifetime, ms
-- ARGV[5]  expected version ('' for none)
-- ARGV[6]  patch: data merge patch ('' for none); context: the new context ('null' when deleted);
--          extend: ttl seconds
-- ARGV[7]  patch: context merge patch ('' for none)
-- ARGV[8]  key prefix of the user indexes (same hash tag as KEYS[1])
-- ARGV[9]  the most bytes data + context may hold
-- Returns {'ok', field, value, ...} | {'missing'} | {'stale', version} | {'too_large', size}.

local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local rolling = ARGV[3] == '1'
local max_lifetime = tonumber(ARGV[4])

local f = redis.call('HMGET', key, 'created_at', 'version', 'ttl', 'data', 'context', 'user_id')
if not f[1] then
  return { 'missing' }
end
local created, version, ttl = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
if ARGV[5] ~= '' and tonumber(ARGV[5]) ~= version then
  return { 'stale', f[2] }
end

local function int(n)
  return string.format('%.0f', n)
end

local fields = {}
local expires = nil
local data, context = f[4], f[5]
local function renew()
  if rolling then
    expires = math.min(now + ttl * 1000, created + max_lifetime)
  end
end

if op == 'touch' then
  renew()
elseif op == 'patch' then
  if ARGV[6] ~= '' then
    data = merge_patch(data, ARGV[6])
    table.insert(fields, 'data')
    table.insert(fields, data)
  end
  if ARGV[7] ~= '' then
    context = merge_patch(context, ARGV[7])
    table.insert(fields, 'context')
    table.insert(fields, context)
  end
  version = version + 1
  renew()
elseif op == 'context' then
  context = ARGV[6]
  table.insert(fields, 'context')
  table.insert(fields, context)
  version = version + 1
  renew()
elseif op == 'extend' then
  ttl = tonumber(ARGV[6])
  expires = math.min(now + ttl * 1000, created + max_lifetime)
else
  return redis.error_reply('unknown session operation ' .. op)
end

local size = #data + #context
if size > tonumber(ARGV[9]) and size > #f[4] + #f[5] then
  return { 'too_large', tostring(size) }
end

if op ~= 'touch' or rolling then
  table.insert(fields, 'last_activity_at')
  table.insert(fields, int(now))
  table.insert(fields, 'version')
  table.insert(fields, int(version))
  table.insert(fields, 'ttl')
  table.insert(fields, int(ttl))
  if expires then
    table.insert(fields, 'expires_at')
    table.insert(fields, int(expires))
  end
  redis.call('HSET', key, unpack(fields))
end

if expires then
  local left = math.max(1, expires - now)
  redis.call('PEXPIRE', key, int(left))
  -- The user index must outlive every session in it.
  local index = ARGV[8] .. f[6]
  if redis.call('PTTL', index) < left then
    redis.call('PEXPIRE', index, int(left))
  end
end

local all = redis.call('HGETALL', key)
table.insert(all, 1, 'ok')
return all
