-- A user's index of sessions, shared by the session scripts that touch it: a sorted set whose
-- scores are all 0 and whose members are '<created_at, 16 digits>:<session id>', so that
-- ZRANGE BYLEX pages it in listing order (oldest first, then by id) from any place.
-- Earlier versions kept a plain set of ids; `index_ready` turns one into the sorted set in
-- place, keeping its TTL, the first time a script meets it.

local function index_member(created, id)
  return string.rep('0', 16 - #created) .. created .. ':' .. id
end

local function member_id(member)
  return string.sub(member, 18)
end

-- index: the user's index; session_prefix: the key prefix of its shard's session hashes.
local function index_ready(index, session_prefix)
  if redis.call('TYPE', index).ok ~= 'set' then
    return
  end
  local ttl = redis.call('PTTL', index)
  local members = {}
  for _, id in ipairs(redis.call('SMEMBERS', index)) do
    local created = redis.call('HGET', session_prefix .. id, 'created_at')
    if created then
      members[#members + 1] = '0'
      members[#members + 1] = index_member(created, id)
    end
  end
  redis.call('DEL', index)
  for i = 1, #members, 1000 do
    redis.call('ZADD', index, unpack(members, i, math.min(i + 999, #members)))
  end
  if #members > 0 and ttl > 0 then
    redis.call('PEXPIRE', index, ttl)
  end
end
