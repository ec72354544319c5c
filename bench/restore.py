#!/usr/bin/env python3
"""Backup and restore rates: `statekeeper restore` of N items (default 100,000) into an empty
Redis, the same file again (every item already there: nothing written), and `statekeeper
backup` of them, in interleaved rounds. Prints medians with the spread.

    bench/restore.py [--items N] [--rounds R]     (after `cargo build --release`)
"""

import argparse
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "statekeeper")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backup_file(items):
    """A backup of `items` cache values (about 100 bytes each, half with a TTL) and its bytes."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [json.dumps({"format": "statekeeper-backup", "version": 1, "created_at": created},
                        separators=(",", ":"))]
    for i in range(items):
        record = {
            "capability": "cache",
            "tenant": "default",
            "id": f"bench-{i % 16}/item-{i}",
            "value": {"id": i, "name": f"user {i}", "tags": ["a", "b", "c"], "score": i * 0.5},
            "ttl_ms": 3_600_000 if i % 2 else None,
        }
        lines.append(json.dumps(record, separators=(",", ":")))
    body = "".join(line + "\n" for line in lines).encode()
    trailer = json.dumps({"count": items, "sha256": hashlib.sha256(body).hexdigest()},
                         separators=(",", ":"))
    return body + trailer.encode() + b"\n"


def run(args, port, stdin=None):
    env = dict(os.environ, STATEKEEPER__REDIS__PORT=str(port), STATEKEEPER__BACKEND__MODE="redis",
               STATEKEEPER__LOG__LEVEL="warn")
    env.pop("REDIS_URL", None)
    started = time.perf_counter()
    done = subprocess.run([BIN, *args], input=stdin, capture_output=True, env=env, cwd=ROOT)
    took = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"statekeeper {' '.join(args)} failed: {done.stderr.decode()}")
    return took, done.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if subprocess.run(["redis-cli", "-p", str(port), "ping"],
                                  capture_output=True).stdout.strip() == b"PONG":
                    break
                time.sleep(0.05)
            data = backup_file(opts.items)
            rates = {"restore into an empty Redis": [], "restore again (all unchanged)": [],
                     "backup": []}
            for _ in range(opts.rounds):
                subprocess.run(["redis-cli", "-p", str(port), "flushall"], capture_output=True)
                took, out = run(["restore"], port, data)
                report = json.loads(out)
                assert report["written"] == opts.items, report
                rates["restore into an empty Redis"].append(opts.items / took)
                took, out = run(["restore"], port, data)
                assert json.loads(out)["unchanged"] == opts.items, out
                rates["restore again (all unchanged)"].append(opts.items / took)
                took, out = run(["backup"], port)
                assert out.count(b"\n") == opts.items + 2
                rates["backup"].append(opts.items / took)
        finally:
            server.terminate()
            server.wait()
    print(f"{opts.items} cache items, {opts.rounds} rounds, one process per run "
          f"(start-up and reading the whole file included):")
    print("| run | items/s, median (min-max) |")
    print("|---|---:|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} "
              f"({min(values):,.0f}-{max(values):,.0f}) |")


if __name__ == "__main__":
    main()
