-- Sliding-window rate-limit checks over 1,000 keys, 100 requests per key per minute: the first
-- pass through the keys is admitted, later checks are mostly denials (still 200 answers).
local counter = 0
local body = '{"rules":[{"algorithm":"sliding_window","limit":100,"window_ms":60000}]}'

request = function()
  counter = counter + 1
  local path = "/v1/rate-limits/user-" .. (counter % 1000) .. "/check"
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
