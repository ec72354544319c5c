-- Usage events over 1,000 subjects, each with a new event id (no duplicates).
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads .. "-" .. os.time())
end

request = function()
  counter = counter + 1
  local path = "/v1/usage/user-" .. (counter % 1000) .. "/events"
  local body = '{"event_id":"e-' .. id .. '-' .. counter .. '","metric":"tokens","amount":42}'
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
