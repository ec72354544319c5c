#!/usr/bin/env python3
"""How statekeeper's costs grow with what it holds: cache GET and PUT of random keys with 10
thousand, 1 million and 10 million values stored (p99 and CPU per 1,000 requests, and memory per
entry, on Redis and on memory), and a user's session listing and the recent-threads listing with
10, 1,000 and 100,000 items.

Run by bench/run.sh --scaling (which installs wrk and builds the release binary first). Each
size is filled, then every cell at that size runs `--rounds` times (default 3, interleaved
across the two backends) for `--duration` seconds; the table gives medians. Results go to stdout
and bench/results/scaling.md. `--sizes` and `--items` change the sizes (comma-separated).
"""

import argparse
import http.client
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the helpers of the main benchmark)

ROOT, BENCH, VALUE, RELEASE = bench.ROOT, bench.BENCH, bench.VALUE, bench.RELEASE


def post(conn, path, body):
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        sys.exit(f"POST {path} answered {response.status}: {data[:200]!r}")
    return data


def fill(port, start, end, batch=1000):
    """Values k<start> .. k<end-1> in namespace "scale", through `_mset`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for first in range(start, end, batch):
        body = '{"ttl_seconds":86400,"entries":{' + ",".join(
            f'"k{i}":{VALUE}' for i in range(first, min(first + batch, end))) + "}}"
        post(conn, "/v1/cache/scale/_mset", body)
    conn.close()


def add_items(port, user, start, end):
    """Sessions start .. end-1 of `user`, and as many agent-state threads."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for i in range(start, end):
        post(conn, "/v1/sessions", json.dumps({"user_id": user, "ttl_seconds": 86400}))
        post(conn, "/v1/agent-states", json.dumps({
            "thread_id": f"scale-{i}", "messages": [{"role": "human", "content": f"message {i}"}]}))
    conn.close()


def cell(port, pid, redis_pid, path, duration, script=None, env=None):
    cpu, redis_cpu = bench.cpu_seconds(pid), bench.cpu_seconds(redis_pid) if redis_pid else 0
    out = bench.run_wrk(f"http://127.0.0.1:{port}{path}", duration, 32, 2, script, env)
    per_1k = out["requests"] / 1000
    out["cpu"] = (bench.cpu_seconds(pid) - cpu) * 1000 / per_1k
    out["redis_cpu"] = (bench.cpu_seconds(redis_pid) - redis_cpu) * 1000 / per_1k if redis_pid else None
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,1000000,10000000")
    parser.add_argument("--items", default="10,1000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    items = [int(s) for s in args.items.split(",") if s]

    procs = bench.Processes()
    rows, memory, listings = [], [], []
    try:
        redis_port = bench.free_port()
        redis_dir = tempfile.mkdtemp()
        redis = procs.start("redis-server", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                             "--save", "", "--appendonly", "no", "--dir", redis_dir], redis_port)
        systems = {}
        for mode in ("redis", "memory"):
            port = bench.free_port()
            env = {
                "STATEKEEPER__SERVER__PORT": str(port),
                "STATEKEEPER__BACKEND__MODE": mode,
                "STATEKEEPER__REDIS__PORT": str(redis_port),
                "STATEKEEPER__REDIS__KEY_PREFIX": "scale",
                "STATEKEEPER__LOG__LEVEL": "warn",
                "STATEKEEPER__MEMORY__MAX_BYTES": str(16 << 30),
                "RUST_LOG": "warn",
            }
            proc = procs.start(f"statekeeper ({mode})", [str(RELEASE / "statekeeper")], port, env=env, cwd=ROOT)
            systems[mode] = (port, proc.pid, redis.pid if mode == "redis" else None)

        def used_memory():
            return int(bench.redis_cli(redis_port, "INFO", "memory").split("used_memory:")[1].split()[0])

        filled = 0
        base = {"memory": bench.rss_bytes(systems["memory"][1]), "redis": used_memory()}
        for size in sizes:
            for mode, (port, pid, _) in systems.items():
                fill(port, filled, size)
            filled = size
            per_entry = {"memory": (bench.rss_bytes(systems["memory"][1]) - base["memory"]) / size,
                         "redis": (used_memory() - base["redis"]) / size}
            memory.append((size, per_entry))
            print(f"{size:>10,} values: memory {per_entry['memory']:.0f} B/entry, "
                  f"Redis {per_entry['redis']:.0f} B/entry", flush=True)
            env = {"BENCH_KEYS": str(size), "BENCH_VALUE_FILE": str(BENCH / "value.json")}
            results = {}
            for _ in range(args.rounds):
                for op in ("GET", "PUT"):
                    for mode, (port, pid, redis_pid) in systems.items():
                        run_env = dict(env, **({"BENCH_PUT": "1"} if op == "PUT" else {}))
                        out = cell(port, pid, redis_pid, "/", args.duration, "get_random.lua", run_env)
                        results.setdefault((op, mode), []).append(out)
            for (op, mode), outs in results.items():
                row = (f"cache {op}", mode, size, *(bench.median([o[k] for o in outs])
                                                    for k in ("rps", "p99", "cpu", "redis_cpu")),
                       sum(o["errors"] for o in outs))
                rows.append(row)
                print(f"  {op} {mode:6} rps {row[3]:.0f}  p99 {row[4]:.2f} ms  cpu {row[5]:.1f} ms/1k  errors {row[7]}",
                      flush=True)

        # Listings: `items` sessions of one user and as many threads, grown step by step.
        have = 0
        for n in items:
            for mode, (port, pid, _) in systems.items():
                add_items(port, "scale-user", have, n)
            have = n
            results = {}
            for _ in range(args.rounds):
                for label, path in (("user's sessions, first page (limit 100)", "/v1/users/scale-user/sessions"),
                                    ("recent threads, limit 10", "/v1/agent-states/recent?limit=10")):
                    for mode, (port, pid, redis_pid) in systems.items():
                        results.setdefault((label, mode), []).append(
                            cell(port, pid, redis_pid, path, args.duration))
            for (label, mode), outs in results.items():
                row = (label, mode, n, *(bench.median([o[k] for o in outs]) for k in ("rps", "p99", "cpu", "redis_cpu")),
                       sum(o["errors"] for o in outs))
                listings.append(row)
                print(f"  {label} {mode:6} {n:>7,}: rps {row[3]:.0f}  p99 {row[4]:.2f} ms  cpu {row[5]:.1f} ms/1k"
                      f"  errors {row[7]}", flush=True)
    finally:
        procs.stop_all()

    def fmt(v, d=1):
        return "—" if v is None else f"{v:.{d}f}"

    lines = ["# Scaling", "",
             f"`bench/run.sh --scaling` ({args.rounds} rounds of {args.duration} s per cell, wrk 2 threads and "
             "32 connections; medians). Cache rows read or write random keys among the values stored. "
             "Errors: answers other than 2xx, and wrk's timeouts (2 s), over all rounds; rps counts them too.", "",
             "| operation | backend | stored | rps | p99 ms | CPU ms/1k | Redis CPU ms/1k | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for label, mode, n, rps, p99, cpu, redis_cpu, errors in rows + listings:
        lines.append(f"| {label} | {mode} | {n:,} | {rps:.0f} | {p99:.2f} | {fmt(cpu)} | {fmt(redis_cpu)} | "
                     f"{errors} |")
    lines += ["", "| values stored | memory backend B/entry (RSS) | Redis B/entry (`used_memory`) |",
              "|---:|---:|---:|"]
    for size, per in memory:
        lines.append(f"| {size:,} | {per['memory']:.0f} | {per['redis']:.0f} |")
    text = "\n".join(lines) + "\n"
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "scaling.md").write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
