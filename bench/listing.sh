#!/usr/bin/env bash
# Listing throughput of two statekeeper builds side by side on one private Redis (mode redis):
# recent threads (1,000 threads) and a user's sessions (20), wrk -t2 -c32 -d5s, three rounds
# interleaved. Each build runs from its own checkout (its config/default.toml).
#   bench/listing.sh OLD_BINARY OLD_CHECKOUT NEW_BINARY NEW_CHECKOUT
# e.g. after `git worktree add /tmp/old <commit>` and a release build of each.
set -euo pipefail
[ $# = 4 ] || { sed -n 2,6p "$0"; exit 2; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rport=$(free_port)
redis-server --port "$rport" --save "" --appendonly no --dir "$(mktemp -d)" >/dev/null 2>&1 &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
sleep 0.5
ports=()
for i in 0 1; do
    binary=${*:$((i * 2 + 1)):1}
    checkout=${*:$((i * 2 + 2)):1}
    port=$(free_port)
    (cd "$checkout" && STATEKEEPER__SERVER__PORT=$port STATEKEEPER__REDIS__PORT=$rport \
        STATEKEEPER__REDIS__KEY_PREFIX=b$i STATEKEEPER__BACKEND__MODE=redis \
        STATEKEEPER__LOG__LEVEL=warn exec "$binary") >/dev/null 2>&1 &
    pids+=($!)
    ports+=("$port")
done
sleep 1
for port in "${ports[@]}"; do
    python3 - "$port" <<'PY'
import json, sys, urllib.request
port = sys.argv[1]
def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()
for i in range(1000):
    post("/v1/agent-states", {"thread_id": f"t-{i}", "messages": [{"role": "human", "content": "hi"}]})
for i in range(20):
    post("/v1/sessions", {"user_id": "u"})
PY
done
for path in "/v1/agent-states/recent?limit=10" "/v1/users/u/sessions"; do
    for round in 1 2 3; do
        for i in 0 1; do
            name=$([ $i = 0 ] && echo old || echo new)
            rps=$(wrk -t2 -c32 -d5s "http://127.0.0.1:${ports[$i]}$path" | awk '/Requests\/sec/ {print $2}')
            echo "$path round $round $name $rps rps"
        done
    done
done
