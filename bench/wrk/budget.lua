-- A cycle: reserve 100 tokens of the subject's budget, then commit 60 with the reservation id
-- the reserve returned. The next request follows from the last answer; run with one
-- connection per thread (bench.py does), so a thread's state is its connection's.
local reservation = nil
local path = "/v1/budgets/bench/tokens"

request = function()
  if reservation then
    return wrk.format("POST", path .. "/reservations/" .. reservation .. "/commit",
      {["Content-Type"] = "application/json"}, '{"amount":60}')
  end
  return wrk.format("POST", path .. "/reserve", {["Content-Type"] = "application/json"},
    '{"amount":100,"ttl_ms":60000}')
end

response = function(status, headers, body)
  if reservation then
    reservation = nil
  elseif status == 201 then
    reservation = string.match(body, '"reservation_id"%s*:%s*"([^"]+)"')
  end
end
