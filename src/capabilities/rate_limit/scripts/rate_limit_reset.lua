-- Forgets every rule of one rate-limit key: its hash (KEYS[1]) and the sliding logs named by
-- the hash's `sw:` fields, which share the hash's tag (KEYS[1] .. ':' .. field).
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 3) == 'sw:' then
    redis.call('DEL', KEYS[1] .. ':' .. field)
  end
end
return redis.call('DEL', KEYS[1])
