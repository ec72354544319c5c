-- Alternates: create a pending action, then confirm the token it returned.
local token = nil
local create_body = '{"intent_name":"pr.merge","entities":{"pr_number":123},"summary":"Merge PR 123"}'

request = function()
  if token then
    local path = "/v1/pending-actions/" .. token .. "/confirm"
    token = nil
    return wrk.format("POST", path, {["Content-Type"] = "application/json"}, "")
  end
  return wrk.format("POST", "/v1/pending-actions", {["Content-Type"] = "application/json"}, create_body)
end

response = function(status, headers, body)
  if status == 201 then
    token = string.match(body, '"token"%s*:%s*"([^"]+)"')
  end
end
