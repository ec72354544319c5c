-- ARGV: limit. Returns the dead jobs' hashes (HGETALL each), oldest death first.
local out = {}
for _, id in ipairs(redis.call('ZRANGE', dead, 0, tonumber(ARGV[1]) - 1)) do
  local job = redis.call('HGETALL', jkey(id))
  if #job > 0 then
    job[#job + 1] = 'id'
    job[#job + 1] = id
    out[#out + 1] = job
  end
end
return out
