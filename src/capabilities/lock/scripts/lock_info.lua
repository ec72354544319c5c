-- A lock as anyone may see it, at Redis's time (mirrors `LockState::info`).
-- Returns {held (0|1), owner ('' for none), expires_at_us (0 when free), fencing_token,
-- highest token granted or checked}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'token', 'owner', 'expires', 'fence', 'checked')
local expires = tonumber(h[3] or '0')
local fence = tonumber(h[4] or '0')
local high = math.max(fence, tonumber(h[5] or '0'))
if h[1] and expires > now then
  return {1, h[2] or '', expires, fence, high}
end
return {0, '', 0, fence, high}
