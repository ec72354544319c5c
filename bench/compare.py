"""Two statekeeper binaries, side by side: the cache GET and PUT of each (on one private Redis),
as a ratio to the bare handler (`examples/http_ceiling`: axum plus one Redis GET or SET, no
statekeeper code), in interleaved rounds on this machine. For checking that a change to the code
(a refactor, a new layer) did not cost the hot path: the ratios of the two binaries should stay
within the machine's noise of each other.

    python3 bench/compare.py --old OLD_BINARY --new NEW_BINARY [--ceiling CEILING_BINARY]
        [--rounds 5] [--duration 5] [--connections 64]

Every system is up for the whole run; each round measures GET then PUT on every system in turn,
the order rotated per round. Prints per-round figures and, per workload, the median ratio to the
bare handler of each binary with its spread (min-max), and new/old.
"""

import argparse
import os
import statistics
import subprocess
import tempfile

from bench import BENCH, RELEASE, ROOT, VALUE, Processes, free_port, request, run_wrk


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="the statekeeper binary before the change")
    parser.add_argument("--new", required=True, help="the statekeeper binary after the change")
    parser.add_argument("--ceiling", default=str(RELEASE / "examples" / "http_ceiling"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per cell")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    args = parser.parse_args()

    procs = Processes()
    try:
        redis_port = free_port()
        procs.start(
            "redis-server",
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            redis_port,
        )
        ports = {}
        for name, binary in (("old", args.old), ("new", args.new)):
            port = free_port()
            env = {
                "STATEKEEPER__SERVER__PORT": str(port),
                "STATEKEEPER__BACKEND__MODE": "redis",
                "STATEKEEPER__REDIS__PORT": str(redis_port),
                "STATEKEEPER__REDIS__KEY_PREFIX": f"compare-{name}",
                "STATEKEEPER__LOG__LEVEL": "warn",
                "RUST_LOG": "warn",
            }
            procs.start(name, [binary], port, env=env, cwd=ROOT)
            request(port, "PUT", "/v1/cache/bench/k", VALUE)
            ports[name] = port
        ceiling_port = free_port()
        subprocess.run(["redis-cli", "-p", str(redis_port), "SET", "compare:ceiling:k", VALUE],
                       check=True, capture_output=True)
        procs.start("bare handler",
                    [args.ceiling, str(ceiling_port), str(redis_port), "compare:ceiling:k"],
                    ceiling_port)
        ports["bare"] = ceiling_port

        value_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        value_file.write(VALUE)
        value_file.close()
        env = {"BENCH_VALUE_FILE": value_file.name}
        paths = {"old": "/v1/cache/bench/k", "new": "/v1/cache/bench/k", "bare": "/k"}
        rps = {(w, s): [] for w in ("get", "put") for s in ports}
        systems = list(ports)
        for r in range(args.rounds):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            for workload, script in (("get", None), ("put", "put.lua")):
                for system in order:
                    url = f"http://127.0.0.1:{ports[system]}{paths[system]}"
                    result = run_wrk(url, args.duration, args.connections, args.threads, script, env)
                    if result["errors"]:
                        raise SystemExit(f"{system} {workload}: {result['errors']} errors")
                    rps[(workload, system)].append(result["rps"])
                    print(f"round {r + 1} {workload} {system}: {result['rps']:.0f} req/s", flush=True)
        os.unlink(value_file.name)

        print()
        print(f"{args.rounds} interleaved rounds of {args.duration} s, {args.connections} connections, "
              f"{os.cpu_count()} cores")
        print("| workload | old / bare (median, min-max) | new / bare (median, min-max) | new / old |")
        print("|---|---|---|---|")
        for workload in ("get", "put"):
            ratio = {
                s: [a / b for a, b in zip(rps[(workload, s)], rps[(workload, "bare")])]
                for s in ("old", "new")
            }
            med = {s: statistics.median(ratio[s]) for s in ratio}
            cells = [f"{med[s]:.3f} ({min(ratio[s]):.3f}-{max(ratio[s]):.3f})" for s in ("old", "new")]
            print(f"| cache {workload.upper()} | {cells[0]} | {cells[1]} | {med['new'] / med['old']:.3f} |")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    os.chdir(BENCH)
    main()
