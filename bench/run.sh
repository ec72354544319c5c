#!/usr/bin/env bash
# The benchmark: statekeeper (on Redis and on memory) side by side with redis-benchmark,
# Webdis, a FastAPI + redis-py reference and a bare axum server, in one run on this machine.
#   bench/run.sh            10 s per cell, 1,000,000 entries for the memory test
#   bench/run.sh --quick    3 s per cell, 100,000 entries
#   bench/run.sh --scaling  how costs grow with what is stored (bench/scaling.py; its own options
#                           follow: --sizes, --items, --rounds, --duration)
# Other options: --rounds N (interleaved rounds, default 3), --only KEY,... (some workloads),
# --duration S, --connections N (default 64), --threads N, --entries N.
# Results: printed and written to bench/results/latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v webdis >/dev/null || missing+=(webdis)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x target/bench-venv/bin/uvicorn ]; then
    python3 -m venv target/bench-venv
    target/bench-venv/bin/pip install -q -r bench/reference/requirements.txt
fi

cargo build --release --locked --bin statekeeper --example http_ceiling --example topic_load
if [ "${1:-}" = "--scaling" ]; then
    shift
    exec python3 bench/scaling.py "$@"
fi
exec python3 bench/bench.py "$@"
