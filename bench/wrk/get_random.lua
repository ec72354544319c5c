-- GET of a random one of BENCH_KEYS keys k0 .. k<n-1> in namespace "scale" (bench/scaling.py);
-- with BENCH_PUT set, a PUT of the 200-byte value to such a key instead.
local n = tonumber(os.getenv("BENCH_KEYS"))
local put = os.getenv("BENCH_PUT")
local body = nil
if put then
  local file = io.open(os.getenv("BENCH_VALUE_FILE"), "r")
  body = file:read("*a")
  file:close()
end

request = function()
  local path = "/v1/cache/scale/k" .. math.random(0, n - 1)
  if put then
    return wrk.format("PUT", path .. "?ttl_seconds=3600", {["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", path)
end
