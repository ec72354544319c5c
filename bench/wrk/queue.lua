-- One cycle per three requests: enqueue a job on this thread's queue, lease it, ack it with the
-- lease token. Run with one connection per thread (bench.py does), so a thread's state is its
-- connection's.
local step = 0
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
  step = step % 3 + 1
  if step == 1 then
    return wrk.format("POST", "/v1/queues/" .. queue .. "/jobs", json, '{"payload":{"n":1}}')
  elseif step == 2 then
    return wrk.format("POST", "/v1/queues/" .. queue .. "/lease", json, '{"visibility_ms":30000}')
  end
  local body = '{"lease_token":"' .. (token or "none") .. '"}'
  return wrk.format("POST", "/v1/queues/" .. queue .. "/jobs/" .. (job_id or "none") .. "/ack", json, body)
end

response = function(status, headers, body)
  if step == 2 then
    job_id = string.match(body, '"job_id"%s*:%s*"([^"]+)"')
    token = string.match(body, '"lease_token"%s*:%s*"([^"]+)"')
  end
end
