-- PATCH of one session's data with a JSON merge patch; the URL is the session's.
local counter = 0
request = function()
  counter = counter + 1
  local body = '{"data":{"step":' .. counter .. ',"page":"checkout"}}'
  return wrk.format("PATCH", nil, {["Content-Type"] = "application/merge-patch+json"}, body)
end
