-- A cycle: take a lock on a fresh name, then release it with the token the acquire returned.
-- The next request follows from the last answer (wrk may call `request` once before any
-- answer). Run with one connection per thread (bench.py does), so a thread's state is its
-- connection's.
local token = nil
local name = nil
local counter = 0
local threads = 0

-- Runs in the main state once per thread: gives each thread (connection) its own names.
function setup(thread)
  threads = threads + 1
  thread:set("id", threads .. "-" .. os.time())
end

request = function()
  if token then
    return wrk.format("DELETE", "/v1/locks/" .. name, {["Lock-Token"] = token})
  end
  counter = counter + 1
  name = "bench-" .. id .. "-" .. counter
  return wrk.format("POST", "/v1/locks/" .. name, {["Content-Type"] = "application/json"},
    '{"ttl_ms":30000}')
end

response = function(status, headers, body)
  if token then
    token = nil
  elseif status == 200 then
    token = string.match(body, '"lock_token"%s*:%s*"([^"]+)"')
  end
end
