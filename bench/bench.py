#!/usr/bin/env python3
"""statekeeper side by side with Redis itself, Webdis, the FastAPI + redis-py reference and a
bare axum server, in one run on one machine, in interleaved rounds (`--rounds`, default 3) whose
medians and spread are reported, with each server's CPU time per 1,000 requests. Started by
bench/run.sh, which installs the tools. A workload is one entry in WORKLOADS and one branch in
`cell` (usually a wrk script in bench/wrk/); `--only KEY,...` runs some of them.

Every HTTP system is driven by wrk with the same connections, threads and duration, the same
payloads (bench/value.json, 200 bytes) and the same private redis-server. Results go to stdout
and bench/results/latest.md.
"""

import argparse
import csv
import http.client
import json
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VALUE = (BENCH / "value.json").read_text()
RELEASE = ROOT / "target" / "release"
VENV = ROOT / "target" / "bench-venv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 30) -> None:
    started = time.time()
    while time.time() - started < timeout:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{name} did not listen on {port} within {timeout}s")


class Processes:
    """Every process the run starts, stopped at the end whatever happens."""

    def __init__(self):
        self.procs = []

    def start(self, name, cmd, port, env=None, cwd=None):
        full_env = dict(os.environ, **(env or {}))
        proc = subprocess.Popen(
            cmd, env=full_env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.procs.append(proc)
        wait_for_port(port, proc, name)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def stop_all(self):
        for proc in reversed(self.procs):
            self.stop(proc)


def request(port, method, path, body=None, content_type="application/json"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": content_type} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    if response.status >= 300:
        sys.exit(f"setup {method} {path} on :{port} answered {response.status}: {data[:200]!r}")
    return json.loads(data) if data and response.getheader("content-type", "").endswith("json") else None


def redis_cli(port, *args):
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def parse_duration_ms(text):
    match = re.match(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


# Appended to every wrk script (or used alone): prints the 99.9th percentile, which `--latency`
# does not.
P999 = """
done = function(summary, latency, requests)
  io.write(string.format("p999_us=%d\\n", latency:percentile(99.9)))
end
"""


def run_wrk(url, duration, connections, threads, script=None, env=None):
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency"]
    code = (BENCH / "wrk" / script).read_text() if script else ""
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua.write(code + P999)
    lua.close()
    cmd += ["-s", lua.name]
    cmd.append(url)
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {}))
    ).stdout
    os.unlink(lua.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p999 = int(re.search(r"p999_us=(\d+)", out).group(1)) / 1000
    p50 = parse_duration_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = parse_duration_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return {"rps": rps, "p50": p50, "p99": p99, "p999": p999, "errors": errors, "requests": total}


def run_topic_load(base, duration, subscribers=100, rate=500):
    """examples/topic_load: publish rps with 100 subscribers, then the delivery latency (publish
    to receipt) at a fixed rate. p50/p99 are the delivery latency; p99.9 holds its maximum."""
    out = subprocess.run([str(RELEASE / "examples" / "topic_load"), base, str(subscribers), str(duration),
                          str(rate)], capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {"rps": r["publish_rps"], "p50": r["p50_ms"], "p99": r["p99_ms"], "p999": r["max_ms"],
            "errors": r["expected"] - r["delivered"], "requests": r["published"]}


def run_redis_benchmark(port, connections, requests, *command):
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", str(connections), "-n", str(requests), "--csv", *command],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip().splitlines()
    # The first column repeats the command, quotes unescaped: read the figures from the end.
    header = next(csv.reader(out[:1]))
    figures = [v.strip('"') for v in out[-1].rsplit(",", len(header) - 1)[1:]]
    row = dict(zip(header[1:], figures))
    return {
        "rps": float(row["rps"]),
        "p50": float(row["p50_latency_ms"]),
        "p99": float(row["p99_latency_ms"]),
        "p999": None,
        "errors": 0,
    }


def cpu_seconds(pid):
    """User + system CPU of a process and its children alive now (uvicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        pids += [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                  text=True).stdout.split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def children_cpu_seconds():
    """User + system CPU of this script's finished children: the load generator of the cell just
    run (the servers it started are reaped only at the end)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def rss_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def fill_cache(port, entries, batch=1000):
    """Writes `entries` cache values of bench/value.json through `_mset`, 1000 per call."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for start in range(0, entries, batch):
        body = '{"ttl_seconds":3600,"entries":{' + ",".join(
            f'"k{i}":{VALUE}' for i in range(start, min(start + batch, entries))
        ) + "}}"
        conn.request("POST", "/v1/cache/mem/_mset", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 204:
            sys.exit(f"_mset answered {response.status}")
    conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds per cell, 100k entries")
    parser.add_argument("--duration", type=int, help="seconds per cell (default 10, quick 3)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--entries", type=int, help="entries for the memory test (default 1000000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds: every system, every workload, round after round")
    parser.add_argument("--only", help="comma-separated workload keys (get, put, lock, ...)")
    args = parser.parse_args()
    duration = args.duration or (3 if args.quick else 10)
    entries = args.entries or (100_000 if args.quick else 1_000_000)
    conns, threads = args.connections, args.threads
    cores = os.cpu_count()

    procs = Processes()
    try:
        only = set(args.only.split(",")) if args.only else None
        results, memory = measure(procs, duration, entries, conns, threads, args.rounds, only)
    finally:
        procs.stop_all()
    report(results, memory, duration, entries, conns, threads, cores, args.quick, args.rounds)


SK = "statekeeper (redis)"
SKM = "statekeeper (memory)"
# The same service on Redis with metrics.enabled = false: the cost of metrics, on GET and PUT.
SKN = "statekeeper (redis, no metrics)"
# On Redis with the near cache on namespace "bench" (bench/near.toml): cache GET only.
SKNEAR = "statekeeper (redis, near cache)"
WEBDIS = "Webdis"
FASTAPI = "FastAPI + redis-py"
CEILING = "bare axum (ceiling)"
# A bare axum handler doing one Redis GET on a shared multiplexed connection: cache GET only.
CEILING_REDIS = "bare axum → Redis (ceiling)"
REDIS = "redis-benchmark (limit)"
WORKLOADS = [
    ("cache GET hit (200 B)", "get"),
    ("cache PUT with TTL", "put"),
    ("pending create + confirm", "pending"),
    ("agent append + get last 10", "agent"),
    ("session GET", "session"),
    ("session PATCH", "session_patch"),
    ("rate-limit check (sliding)", "ratelimit"),
    ("lock acquire + release", "lock"),
    ("enqueue + lease + ack", "queue"),
    ("topic publish, 100 subscribers", "topic"),
    ("usage event", "usage"),
    ("reserve + commit", "budget"),
]


def measure(procs, duration, entries, conns, threads, rounds, only):
    cores = os.cpu_count()
    redis_port = free_port()
    redis_proc = procs.start(
        "redis-server",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        redis_port,
    )
    ports = {name: free_port() for name in (SK, SKN, SKNEAR, SKM, WEBDIS, FASTAPI, CEILING, CEILING_REDIS)}
    sk_env = lambda port, mode: {  # noqa: E731
        "STATEKEEPER__SERVER__PORT": str(port),
        "STATEKEEPER__BACKEND__MODE": mode,
        "STATEKEEPER__REDIS__PORT": str(redis_port),
        "STATEKEEPER__REDIS__KEY_PREFIX": "bench",
        "STATEKEEPER__LOG__LEVEL": "warn",
        "RUST_LOG": "warn",
    }
    binary = str(RELEASE / "statekeeper")
    pids = {}
    pids[SK] = procs.start(SK, [binary], ports[SK], env=sk_env(ports[SK], "redis"), cwd=ROOT).pid
    pids[SKM] = procs.start(SKM, [binary], ports[SKM], env=sk_env(ports[SKM], "memory"), cwd=ROOT).pid
    no_metrics = {**sk_env(ports[SKN], "redis"), "STATEKEEPER__METRICS__ENABLED": "false"}
    pids[SKN] = procs.start(SKN, [binary], ports[SKN], env=no_metrics, cwd=ROOT).pid
    near_cmd = [binary, "serve", "--config", str(BENCH / "near.toml")]
    pids[SKNEAR] = procs.start(SKNEAR, near_cmd, ports[SKNEAR], env=sk_env(ports[SKNEAR], "redis"), cwd=ROOT).pid
    webdis_conf = Path(tempfile.mkdtemp()) / "webdis.json"
    webdis_conf.write_text(json.dumps({
        "redis_host": "127.0.0.1", "redis_port": redis_port, "http_host": "127.0.0.1",
        "http_port": ports[WEBDIS], "threads": cores, "pool_size": 20, "daemonize": False,
        "database": 0, "verbosity": 0, "logfile": "/dev/null",
    }))
    pids[WEBDIS] = procs.start(WEBDIS, ["webdis", str(webdis_conf)], ports[WEBDIS]).pid
    pids[FASTAPI] = procs.start(
        FASTAPI,
        [str(VENV / "bin" / "uvicorn"), "app:app", "--port", str(ports[FASTAPI]), "--workers", str(cores),
         "--no-access-log", "--log-level", "warning"],
        ports[FASTAPI],
        env={"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"},
        cwd=BENCH / "reference",
    ).pid
    pids[CEILING] = procs.start(
        CEILING, [str(RELEASE / "examples" / "http_ceiling"), str(ports[CEILING])], ports[CEILING]).pid
    pids[CEILING_REDIS] = procs.start(
        CEILING_REDIS,
        [str(RELEASE / "examples" / "http_ceiling"), str(ports[CEILING_REDIS]), str(redis_port), "bench:webdis:k"],
        ports[CEILING_REDIS]).pid

    # Set-up: the same data in every system.
    sessions = {}
    for name in (SK, SKM, FASTAPI):
        port = ports[name]
        request(port, "PUT", "/v1/cache/bench/k", VALUE)
        sessions[name] = request(port, "POST", "/v1/sessions", json.dumps({"user_id": "bench-user"}))["session_id"]
        if name != FASTAPI:
            # A budget that never runs out, so every reserve runs the whole check.
            request(port, "PUT", "/v1/budgets/bench/tokens", json.dumps({"limit": 2**53 - 1, "period": "month"}))
        for t in range(threads):
            thread = f"bench-thread-{t}"
            messages = [{"role": "human", "content": f"message {i}"} for i in range(100)]
            if name == FASTAPI:
                request(port, "POST", f"/v1/agent-states/{thread}/messages", json.dumps({"messages": messages}))
            else:
                request(port, "POST", "/v1/agent-states", json.dumps({"thread_id": thread, "messages": messages}))
    redis_cli(redis_port, "SET", "bench:webdis:k", VALUE)

    def cell(name, workload):
        base = f"http://127.0.0.1:{ports[name]}"
        env = {"BENCH_VALUE_FILE": str(BENCH / "value.json")}
        if name == WEBDIS:
            if workload == "get":
                return run_wrk(f"{base}/GET/bench:webdis:k?type=application/json", duration, conns, threads)
            if workload == "put":
                return run_wrk(f"{base}/SETEX/bench:webdis:put/3600", duration, conns, threads, "put.lua", env)
            return None
        if name == SKN and workload not in ("get", "put"):
            return None
        if name == SKNEAR and workload != "get":
            return None
        if name == CEILING_REDIS:
            if workload == "put":
                return run_wrk(f"{base}/v1/cache/bench/put?ttl_seconds=3600", duration, conns, threads, "put.lua", env)
            return run_wrk(f"{base}/v1/cache/bench/k", duration, conns, threads) if workload == "get" else None
        if name == CEILING:
            return run_wrk(f"{base}/v1/cache/bench/k", duration, conns, threads) if workload == "get" else None
        if workload == "get":
            return run_wrk(f"{base}/v1/cache/bench/k", duration, conns, threads)
        if workload == "put":
            return run_wrk(f"{base}/v1/cache/bench/put?ttl_seconds=3600", duration, conns, threads, "put.lua", env)
        if workload == "pending":
            return run_wrk(base, duration, conns, threads, "pending.lua")
        if workload == "agent":
            return run_wrk(base, duration, conns, threads, "agent.lua")
        if workload == "session":
            return run_wrk(f"{base}/v1/sessions/{sessions[name]}", duration, conns, threads)
        if workload == "ratelimit":
            return run_wrk(base, duration, conns, threads, "ratelimit.lua")
        if workload == "lock":
            # One connection per wrk thread: a release must carry the token of the same
            # connection's acquire, and wrk keeps script state per thread.
            return run_wrk(base, duration, conns, conns, "lock.lua")
        if workload == "queue":
            return run_wrk(base, duration, conns, conns, "queue.lua")
        if workload == "usage":
            return run_wrk(base, duration, conns, threads, "usage.lua")
        if workload == "budget":
            return run_wrk(base, duration, conns, conns, "budget.lua")
        if workload == "topic" and name in (SK, SKM):
            return run_topic_load(base, duration)
        if workload == "session_patch" and name != FASTAPI:
            return run_wrk(f"{base}/v1/sessions/{sessions[name]}", duration, conns, threads, "session_patch.lua")
        return None

    # Rounds: every workload on every system, then again, so a noisy minute touches each
    # system alike. Each cell also records the server's CPU time (and Redis's) per 1,000
    # requests, which moves far less than throughput on a shared machine.
    results = {}
    n = max(50_000, int(duration * 60_000))
    for round_ in range(1, rounds + 1):
        for label, workload in WORKLOADS:
            if only and workload not in only:
                continue
            for name in (SK, SKN, SKNEAR, SKM, WEBDIS, FASTAPI, CEILING, CEILING_REDIS):
                cpu_before, redis_before = cpu_seconds(pids[name]), cpu_seconds(redis_proc.pid)
                load_before = children_cpu_seconds()
                outcome = cell(name, workload)
                if not outcome:
                    continue
                per_1k = outcome["requests"] / 1000
                outcome["cpu"] = (cpu_seconds(pids[name]) - cpu_before) * 1000 / per_1k
                outcome["redis_cpu"] = (cpu_seconds(redis_proc.pid) - redis_before) * 1000 / per_1k
                outcome["load_cpu"] = (children_cpu_seconds() - load_before) * 1000 / per_1k
                results.setdefault((label, name), []).append(outcome)
                print(f"round {round_} {label:30} {name:24} {outcome['rps']:>9.0f} rps  p99 {outcome['p99']:.2f} ms"
                      f"  p99.9 {outcome['p999']:.2f} ms  cpu {outcome['cpu']:.1f} ms/1k  errors {outcome['errors']}",
                      flush=True)
        if only and not ({"get", "put"} & only):
            continue
        for label, command in (("cache GET hit (200 B)", ["GET", "bench:webdis:k"]),
                               ("cache PUT with TTL", ["SET", "bench:rb:put", VALUE, "EX", "3600"])):
            r = run_redis_benchmark(redis_port, conns, n, *command)
            results.setdefault((label, REDIS), []).append(r)
            print(f"round {round_} {label:30} {REDIS:24} {r['rps']:>9.0f} rps  p99 {r['p99']:.2f} ms", flush=True)

    # Memory: the same entries in a fresh memory backend and in the private Redis.
    memory = measure_memory(procs, redis_port, ports[SK], entries, sk_env)
    return results, memory


def measure_memory(procs, redis_port, sk_redis_port, entries, sk_env):
    port = free_port()
    proc = procs.start("statekeeper (memory, fill)", [str(RELEASE / "statekeeper")], port,
                       env=sk_env(port, "memory"), cwd=ROOT)
    fill_cache(port, 1000)
    before = rss_bytes(proc.pid)
    fill_cache(port, entries)
    time.sleep(1)
    after = rss_bytes(proc.pid)
    procs.stop(proc)
    redis_cli(redis_port, "FLUSHALL")  # the private server of this run, never a shared one
    fill_cache(sk_redis_port, 1000)
    used_before = int(re.search(r"used_memory:(\d+)", redis_cli(redis_port, "INFO", "memory")).group(1))
    fill_cache(sk_redis_port, entries)
    used_after = int(re.search(r"used_memory:(\d+)", redis_cli(redis_port, "INFO", "memory")).group(1))
    result = {
        "entries": entries,
        "memory_bytes": after - before,
        "redis_bytes": used_after - used_before,
    }
    print(f"memory backend: {result['memory_bytes'] / entries:.0f} B/entry (RSS growth); "
          f"Redis: {result['redis_bytes'] / entries:.0f} B/entry (used_memory growth)", flush=True)
    return result


def report(results, memory, duration, entries, conns, threads, cores, quick, rounds):
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass

    def med(label, name, key):
        runs = results.get((label, name))
        return median([r.get(key) for r in runs]) if runs else None

    def fmt(value, digits=2):
        return "—" if value is None else f"{value:.{digits}f}"

    lines = [
        "# Benchmark results",
        "",
        f"Machine: {cores} cores ({cpu}), {platform.system()} {platform.release()}. The load generator "
        f"(wrk, {threads} threads, {conns} connections, {duration} s per cell"
        f"{', quick mode' if quick else ''}) shares these cores with the system under test, and in "
        "the Redis columns Redis shares them too. The lock and queue rows run one connection per "
        "wrk thread (their scripts pair each request with the previous answer).",
        "",
        f"Medians of {rounds} interleaved rounds (every workload on every system, round after round); "
        "rps with its spread (min–max). CPU: the server's user + system time per 1,000 requests "
        "(uvicorn's workers included), and Redis's beside it; it moves far less than throughput "
        "on a shared machine.",
        "",
        "| workload | system | rps | rps min–max | p50 ms | p99 ms | p99.9 ms | CPU ms/1k | Redis CPU ms/1k | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, _ in WORKLOADS:
        for name in (SK, SKN, SKNEAR, SKM, WEBDIS, FASTAPI, CEILING, CEILING_REDIS, REDIS):
            runs = results.get((label, name))
            if not runs:
                continue
            rps = [r["rps"] for r in runs]
            lines.append(
                f"| {label} | {name} | {med(label, name, 'rps'):.0f} | {min(rps):.0f}–{max(rps):.0f} | "
                f"{fmt(med(label, name, 'p50'))} | {fmt(med(label, name, 'p99'))} | "
                f"{fmt(med(label, name, 'p999'))} | {fmt(med(label, name, 'cpu'), 1)} | "
                f"{fmt(med(label, name, 'redis_cpu'), 1)} | {sum(r['errors'] for r in runs)} |")

    def ratios(label, a, b, key="rps"):
        """The ratio a/b in each round, for the median and the spread."""
        x, y = results.get((label, a)), results.get((label, b))
        if not x or not y:
            return []
        return [p[key] / q[key] for p, q in zip(x, y) if q.get(key)]

    def ratio(label, a, b):
        return median(ratios(label, a, b))

    def spread(label, a, b, key="rps"):
        values = ratios(label, a, b, key)
        if not values:
            return "—"
        return f"{median(values):.2f} ({min(values):.2f}–{max(values):.2f})"

    lines += ["", "## Ratios (rps, per round: median and spread)", "",
              "| workload | statekeeper/Webdis | statekeeper/FastAPI | memory/FastAPI | memory/ceiling | "
              "statekeeper/redis-benchmark | FastAPI/statekeeper CPU per request |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for label, _ in WORKLOADS:
        cells = [spread(label, SK, WEBDIS), spread(label, SK, FASTAPI), spread(label, SKM, FASTAPI),
                 spread(label, SKM, CEILING), spread(label, SK, REDIS)]
        cpu_ratio = median([q["cpu"] / p["cpu"] for p, q in zip(results.get((label, SK), []),
                                                                  results.get((label, FASTAPI), []))
                            if p.get("cpu")])
        if any(c != "—" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {fmt(cpu_ratio, 1)} |")

    for label in ("cache GET hit (200 B)", "cache PUT with TTL"):
        if ratios(label, SK, SKN):
            cpu = median([p["cpu"] / q["cpu"] for p, q in zip(results[(label, SK)], results[(label, SKN)])
                          if q.get("cpu")])
            lines.append(f"\nMetrics on/off, {label}: rps {spread(label, SK, SKN)}, "
                         f"CPU per request {fmt(cpu)}")

    lines += feasibility(results, med, cores)

    per_memory = memory["memory_bytes"] / memory["entries"]
    per_redis = memory["redis_bytes"] / memory["entries"]
    lines += [
        "",
        "## Memory",
        "",
        f"{memory['entries']:,} cache entries of 200 bytes with a TTL: statekeeper's memory backend grew "
        f"by {per_memory:.0f} bytes per entry (RSS), Redis by {per_redis:.0f} bytes per entry "
        "(`used_memory`).",
        "",
        "## Targets",
        "",
    ]
    get = "cache GET hit (200 B)"
    checks = []
    webdis_ratio = ratio(get, SK, WEBDIS)
    if webdis_ratio is not None:
        checks.append((f"cache GET ≥ 1.25× Webdis rps ({webdis_ratio:.2f}×)", webdis_ratio >= 1.25))
    # p99 as every other comparison: the ratio within each round, then its median (one round's
    # stall then moves the median by one place, not the whole column); the medians of the two
    # columns are given beside it.
    for label in (get, "cache PUT with TTL"):
        p99 = ratios(label, SK, WEBDIS, "p99")
        if p99:
            checks.append((f"{label}: p99 ≤ Webdis p99 (per round: statekeeper/Webdis "
                           f"{spread(label, SK, WEBDIS, 'p99')}, lower in {sum(r <= 1 for r in p99)} of "
                           f"{len(p99)} rounds; medians {med(label, SK, 'p99'):.2f} vs "
                           f"{med(label, WEBDIS, 'p99'):.2f} ms)", median(p99) <= 1))
    for label, _ in WORKLOADS:
        r = ratio(label, SK, FASTAPI)
        if r is not None:
            checks.append((f"{label}: ≥ 10× FastAPI ({r:.1f}×)", r >= 10))
    for label in (get, "cache PUT with TTL"):
        r = ratio(label, SK, SKN)
        if r is not None:
            checks.append((f"{label}: metrics cost < 5% of rps ({(1 - r) * 100:.1f}%)", r > 0.95))
    for label, name in ((get, "cache GET"), ("cache PUT with TTL", "cache PUT")):
        r = ratio(label, SK, CEILING_REDIS)
        if r is None:
            continue
        checks.append((f"{name} on Redis ≥ 90% of the bare axum → Redis handler "
                       f"({spread(label, SK, CEILING_REDIS)})", r >= 0.9))
        cpu = ratios(label, SK, CEILING_REDIS, "cpu")
        if label == get:
            checks.append((f"{name} CPU per request ≤ 1.2× the bare axum → Redis handler's "
                           f"({spread(label, SK, CEILING_REDIS, 'cpu')})", median(cpu) <= 1.2))
        else:
            checks.append((f"{name} CPU per request against the bare axum → Redis handler's "
                           f"({spread(label, SK, CEILING_REDIS, 'cpu')})", None))
    r = ratio(get, SKNEAR, WEBDIS)
    if r is not None:
        checks.append((f"near-cached GET ≥ 1.5× Webdis ({r:.2f}×)", r >= 1.5))
        m = ratio(get, SKNEAR, SKM)
        checks.append((f"near-cached GET ≥ 90% of the memory backend ({m * 100:.0f}%)", m >= 0.9))
    r = ratio(get, SKM, CEILING)
    if r is not None:
        checks.append((f"memory cache GET ≥ 70% of the ceiling ({r * 100:.0f}%)", r >= 0.7))
    checks.append((f"memory bytes/entry ≤ Redis ({per_memory:.0f} vs {per_redis:.0f})", per_memory <= per_redis))
    verdict = {True: "met", False: "MISSED", None: "measured (no target)"}
    lines += [f"- {verdict[ok]}: {text}" for text, ok in checks]
    text = "\n".join(lines) + "\n"
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "latest.md").write_text(text)
    print()
    print(text)


def feasibility(results, med, cores):
    """For each row with a ≥ 10× FastAPI target: the CPU the machine has per 1,000 requests at
    ten times the reference's rate, against a floor that no HTTP → Redis service built on these
    crates can go below on this machine: the load generator's CPU per request, Redis's for this
    row's statekeeper calls, and the bare axum → Redis handler's (one GET, no middleware)."""
    get = "cache GET hit (200 B)"
    bare = med(get, CEILING_REDIS, "cpu")
    if bare is None:
        return []
    lines = ["", "## What 10× the reference needs on this machine", "",
             f"All processes share {cores} cores, so at r requests per second each 1,000 requests can "
             f"use at most {cores} × 10⁶ / r ms of CPU. The floor adds what this run measured for the "
             "load generator (wrk) and Redis per 1,000 requests of statekeeper's row, and the bare "
             "axum → Redis handler's own CPU for a single GET, which any service here must at least "
             "spend. Redis's CPU per request falls somewhat as its batches grow, so the floor is "
             "approximate; a floor above the budget means the target is out of reach on this machine "
             "whatever the service does.", "",
             "| workload | 10× FastAPI rps | CPU budget ms/1k | wrk ms/1k | Redis ms/1k | bare handler ms/1k "
             "| floor ms/1k | within reach? |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for label, _ in WORKLOADS:
        reference, load, redis = med(label, FASTAPI, "rps"), med(label, SK, "load_cpu"), med(label, SK, "redis_cpu")
        if None in (reference, load, redis):
            continue
        need = 10 * reference
        budget = cores * 1e6 / need
        floor = load + redis + bare
        lines.append(f"| {label} | {need:.0f} | {budget:.1f} | {load:.1f} | {redis:.1f} | {bare:.1f} | "
                     f"{floor:.1f} | {'yes' if floor <= budget else 'no'} |")
    return lines


if __name__ == "__main__":
    main()
