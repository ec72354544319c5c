-- Alternates on one thread per wrk thread: append a message, then read the last 10.
-- The threads are created with 100 messages before the run (bench.py).
local counter = 0
local threads = {}

setup = function(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  local path = "/v1/agent-states/bench-thread-" .. id
  if counter % 2 == 1 then
    local body = '{"messages":[{"role":"human","content":"message ' .. counter .. ' of the benchmark"}]}'
    return wrk.format("POST", path .. "/messages", {["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", path .. "?last_messages=10")
end
