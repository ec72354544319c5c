-- Adds to a numeric JSON value atomically; the rules match `Increment::apply` in
-- src/domain/cache.rs: integer + integer is exact 64-bit arithmetic (INCRBY), anything else is
-- a double formatted as C's %.{15,16,17}g, the first precision that reads back exactly.
-- KEYS[1] the value
-- ARGV[1] the increment as text; ARGV[2] "1" when it is an integer
-- ARGV[3] the text of a new counter; ARGV[4] TTL seconds of a new counter ("0": none)
-- Returns {"ok", text} | {"not_a_number"} | {"out_of_range"}
local current = redis.call('GET', KEYS[1])
if not current then
  if ARGV[4] ~= '0' then
    redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
  else
    redis.call('SET', KEYS[1], ARGV[3])
  end
  return {'ok', ARGV[3]}
end

local trimmed = string.match(current, '^%s*(.-)%s*$')
if ARGV[2] == '1' and (trimmed == '0' or string.match(trimmed, '^-?[1-9]%d*$')) then
  if trimmed ~= current then
    redis.call('SET', KEYS[1], trimmed, 'KEEPTTL')
  end
  local sum = redis.pcall('INCRBY', KEYS[1], ARGV[1])
  if type(sum) == 'number' then
    return {'ok', tostring(sum)}
  end
  if string.find(sum['err'], 'overflow', 1, true) then
    return {'out_of_range'}
  end
  -- Beyond 64 bits: fall through to doubles, as the memory adapter does.
end

local number = tonumber(trimmed)
if not number or not string.match(trimmed, '^-?%d') then
  return {'not_a_number'}
end
local result = number + tonumber(ARGV[1])
if result ~= result or result == math.huge or result == -math.huge then
  return {'out_of_range'}
end
local text
for precision = 15, 17 do
  text = string.format('%.' .. precision .. 'g', result)
  if tonumber(text) == result then
    break
  end
end
redis.call('SET', KEYS[1], text, 'KEEPTTL')
return {'ok', text}
