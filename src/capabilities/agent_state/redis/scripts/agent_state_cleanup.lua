-- Drops the index entries of every expired thread of a tenant.
-- KEYS: recent, ids, expiries. ARGV: now ms. Returns how many entries were dropped.
local now = tonumber(ARGV[1])
local removed = prune_expired(KEYS[1], KEYS[2], KEYS[3], now)
if removed > 0 then
  arm_indexes(KEYS[1], KEYS[2], KEYS[3], now)
end
return removed
