"""Reads a running service's /metrics with Prometheus's own Python parser (OpenMetrics, strict),
after the contract traffic, and checks the series an operator's dashboard and alerts use.

    metrics_check.py scrape --base-url URL --backend memory|redis --names-out FILE
        parses the exposition, checks the series every backend has (and those of its own
        backend) with plausible values, writes the metric names it saw to FILE;
    metrics_check.py docs --names FILE... --dashboard PATH --alerts PATH
        checks that every statekeeper_* name the dashboard and the alerts use is one the
        service exposes (on one backend or the other).
"""

import argparse
import json
import re
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def fail(message):
    print(f"metrics_check: {message}", file=sys.stderr)
    sys.exit(1)


def scrape(args):
    with urllib.request.urlopen(f"{args.base_url}/metrics", timeout=10) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    if not content_type.startswith("application/openmetrics-text"):
        fail(f"content type {content_type}")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples = {}
    for family in families.values():
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)

    def total(name, **labels):
        return sum(
            s.value
            for s in samples.get(name, [])
            if all(s.labels.get(k) == v for k, v in labels.items())
        )

    expected = {
        "statekeeper_http_requests": "counter",
        "statekeeper_http_request_duration_seconds": "histogram",
        "statekeeper_http_requests_in_flight": "gauge",
        "statekeeper_backend_active": "gauge",
        "statekeeper_backend_mode": "gauge",
        "statekeeper_backend_degraded": "gauge",
        "statekeeper_backend_degraded_seconds": "gauge",
        "statekeeper_cache_lookups": "counter",
        "statekeeper_pending_action_confirms": "counter",
        "statekeeper_rate_limit_decisions": "counter",
        "statekeeper_lock_operations": "counter",
        "statekeeper_queue_jobs": "counter",
        "statekeeper_topic_messages": "counter",
        "statekeeper_topic_resets": "counter",
        "statekeeper_topic_subscribers": "gauge",
        "statekeeper_usage_events": "counter",
        "statekeeper_budget_reservations": "counter",
    }
    if args.backend == "redis":
        expected.update(
            {
                "statekeeper_redis_call_duration_seconds": "histogram",
                "statekeeper_redis_pool_connections": "gauge",
                "statekeeper_redis_memory_used_bytes": "gauge",
                "statekeeper_redis_memory_max_bytes": "gauge",
                "statekeeper_redis_evicted_keys": "gauge",
            }
        )
    else:
        expected.update(
            {
                "statekeeper_memory_used_bytes": "gauge",
                "statekeeper_memory_max_bytes": "gauge",
                "statekeeper_memory_entries": "gauge",
            }
        )
    for name, kind in expected.items():
        if name not in families:
            fail(f"[{args.backend}] no family {name}; families: {sorted(families)}")
        if families[name].type != kind:
            fail(f"[{args.backend}] {name} is a {families[name].type}, not a {kind}")

    answered = total("statekeeper_http_requests_total")
    if answered < 100:
        fail(f"[{args.backend}] only {answered} requests counted after the contract run")
    timed = total("statekeeper_http_request_duration_seconds_count")
    if timed != answered:
        fail(f"[{args.backend}] {answered} requests counted but {timed} timed")
    routes = {s.labels["route"] for s in samples["statekeeper_http_requests_total"]}
    for route in routes:
        if route != "unmatched" and not route.startswith("/"):
            fail(f"[{args.backend}] route label {route!r} is not a template")
    if total("statekeeper_cache_lookups_total") < 1:
        fail(f"[{args.backend}] no cache lookup counted")
    if total("statekeeper_backend_degraded") != 0:
        fail(f"[{args.backend}] degraded while Redis is up")
    if args.backend == "redis":
        if total("statekeeper_redis_call_duration_seconds_count") < 1:
            fail("[redis] no Redis call counted")
        if total("statekeeper_redis_pool_connections", state="max") < 1:
            fail("[redis] the pool has no size")
        if total("statekeeper_redis_memory_used_bytes") <= 0:
            fail("[redis] Redis's used memory is not read")
    else:
        used = total("statekeeper_memory_used_bytes")
        bound = total("statekeeper_memory_max_bytes")
        if not 0 < used < bound:
            fail(f"[memory] memory used {used} of {bound}")
    names = set(families)
    for family in families.values():
        for sample in family.samples:
            names.add(sample.name)
    with open(args.names_out, "w") as out:
        out.write("\n".join(sorted(names)) + "\n")
    print(
        f"metrics_check[{args.backend}]: {len(families)} families, {answered:.0f} requests "
        f"over {len(routes)} route templates"
    )


ONLY_ONCE_IT_HAPPENS = {"statekeeper_redis_errors", "statekeeper_redis_errors_total"}


def docs(args):
    exposed = set()
    for path in args.names:
        with open(path) as names:
            exposed.update(line.strip() for line in names if line.strip())
    with open(args.dashboard) as dashboard:
        text = json.dumps(json.load(dashboard))
    with open(args.alerts) as alerts:
        text += alerts.read()
    used = set(re.findall(r"statekeeper_[a-z_]+", text))
    # Series whose labels are only known when it happens (an error of one Redis operation).
    exposed |= ONLY_ONCE_IT_HAPPENS
    missing = sorted(used - exposed)
    if missing:
        fail(f"the dashboard or the alerts use series the service does not expose: {missing}")
    print(f"metrics_check: the dashboard and the alerts use {len(used)} series, all exposed")


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("scrape")
    one.add_argument("--base-url", required=True)
    one.add_argument("--backend", choices=["memory", "redis"], required=True)
    one.add_argument("--names-out", required=True)
    both = commands.add_parser("docs")
    both.add_argument("--names", nargs="+", required=True)
    both.add_argument("--dashboard", required=True)
    both.add_argument("--alerts", required=True)
    args = parser.parse_args()
    scrape(args) if args.command == "scrape" else docs(args)


if __name__ == "__main__":
    main()
