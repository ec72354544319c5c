-- A cycle: enqueue a job on this thread's queue, lease it, ack it with the lease token. The
-- next request follows from the last answer (wrk may call `request` once before any answer).
-- Run with one connection per thread (bench.py does), so a thread's state is its connection's.
local next_step = "enqueue"
local sent = nil
local job_id = nil
local token = nil
local threads = 0

-- Runs in the main state once per thread: each thread (connection) has its own queue.
function setup(thread)
  threads = threads + 1
  thread:set("queue", "bench-" .. threads .. "-" .. os.time())
end

local json = {["Content-Type"] = "application/json"}

request = function()
  sent = next_step
  if sent == "enqueue" then
    return wrk.format("POST", "/v1/queues/" .. queue .. "/jobs", json, '{"payload":{"n":1}}')
  elseif sent == "lease" then
    return wrk.format("POST", "/v1/queues/" .. queue .. "/lease", json, '{"visibility_ms":30000}')
  end
  local body = '{"lease_token":"' .. token .. '"}'
  return wrk.format("POST", "/v1/queues/" .. queue .. "/jobs/" .. job_id .. "/ack", json, body)
end

response = function(status, headers, body)
  if sent == "enqueue" then
    next_step = "lease"
  elseif sent == "lease" then
    job_id = string.match(body, '"job_id"%s*:%s*"([^"]+)"')
    token = string.match(body, '"lease_token"%s*:%s*"([^"]+)"')
    next_step = (job_id and token) and "ack" or "enqueue"
  else
    next_step = "enqueue"
  end
end
