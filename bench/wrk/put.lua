-- PUT of the 200-byte JSON value; the URL carries path and query.
local file = io.open(os.getenv("BENCH_VALUE_FILE"), "r")
wrk.method = "PUT"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
