"""Smoke test of the Python client that openapi-python-client generates from openapi.yaml.

Run by scripts/contract with the generated package (`statekeeper_client`) on PYTHONPATH, against
a running service. The cache steps call the generated modules by name. The pending-action,
session and agent-state steps follow DESIGN section 4: each finds its operation in openapi.yaml by
method and path, and calls the generated module named after that operation's tag and
operationId; a step whose operation is not in the spec yet is reported as skipped.

Prints one line per step and closes with "client smoke: N passed, N failed, N skipped".
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import sys
import traceback
import uuid
from typing import Any, Callable

import yaml

from statekeeper_client import AuthenticatedClient
from statekeeper_client.api.cache import (
    cache_delete,
    cache_get,
    cache_get_ttl,
    cache_incr,
    cache_put,
)
from statekeeper_client.api.health import health
from statekeeper_client.models import IncrRequest, Problem


class Skip(Exception):
    """The step's operation is not in the spec (its resource has not landed yet)."""


def snake(name: str) -> str:
    """openapi-python-client's module and argument naming."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return name.strip("_").lower()


def body_json(response: Any) -> Any:
    return json.loads(response.content) if response.content else None


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


class Api:
    """Calls generated operations found by method and path in the spec."""

    def __init__(self, client: AuthenticatedClient, spec: dict) -> None:
        self.client = client
        self.spec = spec

    def operation(self, method: str, path: str) -> Any:
        """The generated module of the operation at `method path`."""
        # A resource may name a path parameter differently from DESIGN (`{id}`, `{session_id}`).
        shape = re.sub(r"\{[^}]*\}", "{}", path)
        operation = next(
            (
                item.get(method.lower())
                for spec_path, item in self.spec.get("paths", {}).items()
                if re.sub(r"\{[^}]*\}", "{}", spec_path) == shape
            ),
            None,
        )
        if operation is None:
            raise Skip(f"{method} {path} is not in openapi.yaml")
        tag = snake(operation["tags"][0])
        module = importlib.import_module(
            f"statekeeper_client.api.{tag}.{snake(operation['operationId'])}"
        )
        return module

    def call(
        self,
        method: str,
        path: str,
        path_values: list[str],
        body: Any = None,
        **extra: Any,
    ) -> Any:
        """Calls the operation; `body` is a dict turned into the generated request model."""
        module = self.operation(method, path)
        signature = inspect.signature(module.sync_detailed)
        kwargs: dict[str, Any] = {"client": self.client}
        if body is not None:
            kwargs["body"] = self.request_model(module).from_dict(body)
        for name, value in extra.items():
            # A header or query parameter the spec does not document is a failure, not a
            # silently dropped argument.
            expect(
                snake(name) in signature.parameters,
                f"{method} {path} takes no parameter {name!r} in the generated client",
            )
            kwargs[snake(name)] = value
        return module.sync_detailed(*path_values, **kwargs)

    @staticmethod
    def request_model(module: Any) -> Any:
        annotation = inspect.signature(module._get_kwargs).parameters["body"].annotation
        names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", str(annotation))
        models = importlib.import_module("statekeeper_client.models")
        for name in names:
            model = getattr(models, name, None)
            if model is not None and hasattr(model, "from_dict"):
                return model
        raise AssertionError(f"no generated request model in {annotation!r}")


def step_health(api: Api) -> None:
    parsed = health.sync(client=api.client)
    expect(parsed is not None and parsed.status == "ok", f"health: {parsed!r}")


def step_cache(api: Api) -> None:
    ns, key = "smoke", f"item-{uuid.uuid4().hex[:8]}"
    value = {"name": "Ada", "tags": ["x", 1, None], "nested": {"n": 1.5}}
    put = cache_put.sync_detailed(ns, key, client=api.client, body=value, ttl_seconds=120)
    expect(put.status_code == 204, f"cache put: {put.status_code} {put.content!r}")
    got = cache_get.sync_detailed(ns, key, client=api.client)
    expect(got.status_code == 200, f"cache get: {got.status_code}")
    expect(body_json(got) == value, f"cache get returned {got.content!r}")
    ttl = cache_get_ttl.sync(ns, key, client=api.client)
    expect(ttl is not None and 0 < ttl.ttl_seconds <= 120, f"cache ttl: {ttl!r}")
    counter = f"{key}-n"
    incr = cache_incr.sync(ns, counter, client=api.client, body=IncrRequest(by=5))
    expect(incr is not None and incr.value == 5, f"cache incr: {incr!r}")
    # The same call found through the spec, as the steps of the other resources are, so that
    # this lookup is exercised before they land.
    again = api.call(
        "POST", "/v1/cache/{ns}/{k}/incr", [ns, counter], body={"by": 2, "ttl_seconds": 60}
    )
    expect(again.status_code == 200, f"cache incr by lookup: {again.status_code}")
    expect(body_json(again) == {"value": 7}, f"cache incr by lookup: {again.content!r}")
    deleted = cache_delete.sync_detailed(ns, key, client=api.client)
    expect(deleted.status_code == 204, f"cache delete: {deleted.status_code}")
    missing = cache_get.sync(ns, key, client=api.client)
    expect(isinstance(missing, Problem) and missing.code == "not_found", f"{missing!r}")


def problem_code(response: Any) -> str | None:
    return (body_json(response) or {}).get("code")


def step_pending_action(api: Api) -> None:
    created = api.call(
        "POST",
        "/v1/pending-actions",
        [],
        body={
            "intent_name": "deploy_service",
            "entities": {"service": "billing", "env": "prod"},
            "summary": "Deploy billing to prod",
            "ttl_seconds": 60,
        },
    )
    expect(created.status_code == 201, f"create: {created.status_code} {created.content!r}")
    token = body_json(created)["token"]
    expect(
        created.headers.get("location") == f"/v1/pending-actions/{token}",
        f"create: Location {created.headers.get('location')!r}",
    )
    action_path = "/v1/pending-actions/{token}"
    read = api.call("GET", action_path, [token])
    expect(read.status_code == 200, f"get: {read.status_code} {read.content!r}")
    expect(body_json(read)["status"] == "pending", f"get: {read.content!r}")
    idempotency_key = uuid.uuid4().hex
    confirm_path = "/v1/pending-actions/{token}/confirm"
    confirmed = api.call("POST", confirm_path, [token], idempotency_key=idempotency_key)
    expect(confirmed.status_code == 200, f"confirm: {confirmed.status_code} {confirmed.content!r}")
    action = body_json(confirmed)["action"]
    expect(action["intent_name"] == "deploy_service", f"confirmed action: {action!r}")
    expect(action["entities"] == {"service": "billing", "env": "prod"}, f"{action!r}")
    retried = api.call("POST", confirm_path, [token], idempotency_key=idempotency_key)
    expect(retried.status_code == 200, f"retried confirm: {retried.status_code} {retried.content!r}")
    expect(body_json(retried) == body_json(confirmed), f"retried confirm: {retried.content!r}")
    again = api.call("POST", confirm_path, [token])
    expect(again.status_code == 409, f"second confirm: {again.status_code} {again.content!r}")
    expect(problem_code(again) == "already_confirmed", f"second confirm: {again.content!r}")
    read = api.call("GET", action_path, [token])
    expect(body_json(read)["status"] == "confirmed", f"get after confirm: {read.content!r}")
    cancel_path = "/v1/pending-actions/{token}/cancel"
    refused = api.call("POST", cancel_path, [token])
    expect(refused.status_code == 409, f"cancel confirmed: {refused.status_code} {refused.content!r}")

    other = api.call("POST", "/v1/pending-actions", [], body={"intent_name": "rollback"})
    expect(other.status_code == 201, f"create: {other.status_code} {other.content!r}")
    other_token = body_json(other)["token"]
    cancelled = api.call("POST", cancel_path, [other_token])
    expect(cancelled.status_code == 204, f"cancel: {cancelled.status_code} {cancelled.content!r}")
    late = api.call("POST", confirm_path, [other_token])
    expect(late.status_code == 409, f"confirm cancelled: {late.status_code} {late.content!r}")
    expect(problem_code(late) == "already_cancelled", f"confirm cancelled: {late.content!r}")
    unknown = api.call("GET", action_path, ["no-such-token"])
    expect(unknown.status_code == 404, f"get unknown: {unknown.status_code} {unknown.content!r}")


def step_session(api: Api) -> None:
    user_id = f"user-{uuid.uuid4().hex[:8]}"
    created = api.call(
        "POST",
        "/v1/sessions",
        [],
        body={"user_id": user_id, "data": {"theme": "dark"}, "ttl_seconds": 600},
    )
    expect(created.status_code == 201, f"create: {created.status_code} {created.content!r}")
    session = body_json(created)
    read = api.call("GET", "/v1/sessions/{id}", [session["session_id"]])
    expect(read.status_code == 200, f"read: {read.status_code} {read.content!r}")
    expect(body_json(read)["user_id"] == user_id, f"read back: {read.content!r}")
    expect(body_json(read)["data"] == {"theme": "dark"}, f"read back: {read.content!r}")


def step_rate_limit(api: Api) -> None:
    key = f"user-{uuid.uuid4().hex[:8]}"
    path = "/v1/rate-limits/{key}/check"
    rule = {"algorithm": "fixed_window", "limit": 2, "window_ms": 60000}
    answers = [api.call("POST", path, [key], body={"rules": [rule]}) for _ in range(3)]
    for answer in answers:
        expect(answer.status_code == 200, f"check: {answer.status_code} {answer.content!r}")
    allowed = [body_json(a)["allowed"] for a in answers]
    expect(allowed == [True, True, False], f"checks: {allowed}")
    expect(answers[2].headers.get("retry-after") is not None, "a denial carries Retry-After")
    reset = api.call("DELETE", "/v1/rate-limits/{key}", [key])
    expect(reset.status_code == 204, f"reset: {reset.status_code} {reset.content!r}")
    peek = api.call("POST", path, [key], body={"rules": [rule], "mode": "peek"})
    expect(body_json(peek)["rules"][0]["remaining"] == 2, f"after reset: {peek.content!r}")


def step_lock(api: Api) -> None:
    name = f"lock-{uuid.uuid4().hex[:8]}"
    granted = api.call("POST", "/v1/locks/{name}", [name], body={"ttl_ms": 30000, "owner": "smoke"})
    expect(granted.status_code == 200, f"acquire: {granted.status_code} {granted.content!r}")
    lock = body_json(granted)
    held = api.call("POST", "/v1/locks/{name}", [name], body={"ttl_ms": 1000})
    expect(held.status_code == 409, f"acquire held: {held.status_code} {held.content!r}")
    expect(body_json(held)["code"] == "lock_held", f"acquire held: {held.content!r}")
    seen = api.call("GET", "/v1/locks/{name}", [name])
    expect(body_json(seen)["owner"] == "smoke", f"get: {seen.content!r}")
    fence = {"fencing_token": lock["fencing_token"]}
    checked = api.call("POST", "/v1/fences/{name}/check", [name], body=fence)
    expect(checked.status_code == 200, f"fence check: {checked.status_code} {checked.content!r}")
    released = api.call("DELETE", "/v1/locks/{name}", [name], lock_token=lock["lock_token"])
    expect(released.status_code == 204, f"release: {released.status_code} {released.content!r}")


def step_queue(api: Api) -> None:
    queue = f"queue-{uuid.uuid4().hex[:8]}"
    created = api.call("POST", "/v1/queues/{queue}/jobs", [queue], body={"payload": {"n": 1}, "priority": 5})
    expect(created.status_code == 201, f"enqueue: {created.status_code} {created.content!r}")
    leased = api.call("POST", "/v1/queues/{queue}/lease", [queue], body={"visibility_ms": 30000})
    jobs = body_json(leased)["jobs"]
    expect(len(jobs) == 1 and jobs[0]["payload"] == {"n": 1}, f"lease: {leased.content!r}")
    job = jobs[0]
    path = "/v1/queues/{queue}/jobs/{job_id}/ack"
    acked = api.call("POST", path, [queue, job["job_id"]], body={"lease_token": job["lease_token"]})
    expect(acked.status_code == 200, f"ack: {acked.status_code} {acked.content!r}")
    again = api.call("POST", path, [queue, job["job_id"]], body={"lease_token": job["lease_token"]})
    expect(again.status_code == 409, f"ack again: {again.status_code} {again.content!r}")
    counts = api.call("GET", "/v1/queues/{queue}", [queue])
    expect(body_json(counts)["done"] == 1, f"counts: {counts.content!r}")


def step_topic(api: Api) -> None:
    topic = f"topic-{uuid.uuid4().hex[:8]}"
    path = "/v1/topics/{topic}/messages"
    ids = []
    for n in range(3):
        published = api.call("POST", path, [topic], body={"data": {"n": n}, "event": "tick"})
        expect(published.status_code == 201, f"publish: {published.status_code} {published.content!r}")
        ids.append(body_json(published)["id"])
    # The stream stays open: read it with the client's HTTP library, not the generated call.
    client = api.client.get_httpx_client()
    url = f"/v1/topics/{topic}/events"
    lines = []
    with client.stream("GET", url, headers={"Last-Event-ID": ids[0]}, timeout=5) as response:
        expect(response.status_code == 200, f"subscribe: {response.status_code}")
        expect(response.headers["content-type"] == "text/event-stream", "an event stream")
        for line in response.iter_lines():
            lines.append(line)
            if line == f"id: {ids[2]}":
                break
    expect(f"id: {ids[1]}" in lines and "event: tick" in lines, f"resumed after the first: {lines}")
    expect(f"id: {ids[0]}" not in lines, f"not the first again: {lines}")


def step_usage(api: Api) -> None:
    subject = f"user-{uuid.uuid4().hex[:8]}"
    body = {"event_id": "e-1", "metric": "tokens", "amount": 7}
    first = api.call("POST", "/v1/usage/{subject}/events", [subject], body=body)
    expect(first.status_code == 201, f"event: {first.status_code} {first.content!r}")
    again = api.call("POST", "/v1/usage/{subject}/events", [subject], body=body)
    expect(again.status_code == 200 and body_json(again)["counted"] is False, f"again: {again.content!r}")
    totals = api.call("GET", "/v1/usage/{subject}", [subject])
    expect(body_json(totals)["totals"][0]["amount"] == 7, f"totals: {totals.content!r}")
    budget = "/v1/budgets/{subject}/{metric}"
    put = api.call("PUT", budget, [subject, "tokens"], body={"limit": 10, "period": "day"})
    expect(body_json(put)["remaining"] == 3, f"budget: {put.content!r}")
    held = api.call("POST", budget + "/reserve", [subject, "tokens"], body={"amount": 3, "ttl_ms": 60000})
    expect(held.status_code == 201, f"reserve: {held.status_code} {held.content!r}")
    over = api.call("POST", budget + "/reserve", [subject, "tokens"], body={"amount": 1, "ttl_ms": 60000})
    expect(over.status_code == 409, f"over budget: {over.status_code} {over.content!r}")
    commit = budget + "/reservations/{reservation_id}/commit"
    rid = body_json(held)["reservation_id"]
    done = api.call("POST", commit, [subject, "tokens", rid], body={"amount": 2})
    expect(body_json(done) == {"committed": 2, "returned": 1}, f"commit: {done.content!r}")


def step_agent_state(api: Api) -> None:
    thread_id = f"thread-{uuid.uuid4().hex[:8]}"
    thread_path = "/v1/agent-states/{thread_id}"
    created = api.call(
        "POST",
        "/v1/agent-states",
        [],
        body={
            "thread_id": thread_id,
            "messages": [{"role": "human", "content": "Deploy billing"}],
            "context": {"repo": "billing"},
        },
    )
    expect(created.status_code == 201, f"create: {created.status_code} {created.content!r}")
    expect(created.headers.get("etag") == '"1"', f"create: ETag {created.headers.get('etag')!r}")
    appended = api.call(
        "POST",
        "/v1/agent-states/{thread_id}/messages",
        [thread_id],
        body={
            "messages": [
                {
                    "role": "ai",
                    "content": "Deploying billing to prod.",
                    "tool_calls": [{"name": "deploy", "args": {"service": "billing"}, "id": "c1"}],
                },
                {"role": "tool", "content": "deployed", "tool_call_id": "c1"},
            ]
        },
        if_match='"1"',
    )
    expect(appended.status_code == 200, f"append: {appended.status_code} {appended.content!r}")
    expect(body_json(appended) == {"message_count": 3, "version": 2}, f"append: {appended.content!r}")
    stale = api.call(
        "POST",
        "/v1/agent-states/{thread_id}/messages",
        [thread_id],
        body={"messages": [{"role": "human", "content": "lost"}]},
        if_match='"1"',
    )
    expect(stale.status_code == 412, f"stale append: {stale.status_code} {stale.content!r}")
    expect(problem_code(stale) == "precondition_failed", f"stale append: {stale.content!r}")
    malformed = api.call(
        "PUT",
        "/v1/agent-states/{thread_id}/relevance",
        [thread_id],
        body={"is_relevant": False},
        if_match='"2", "3"',
    )
    expect(malformed.status_code == 400, f"malformed If-Match: {malformed.status_code}")
    patched = api.call(
        "PATCH",
        "/v1/agent-states/{thread_id}/context",
        [thread_id],
        body={"env": "prod", "repo": None},
        if_match='W/"2"',
    )
    expect(patched.status_code == 200, f"patch: {patched.status_code} {patched.content!r}")
    expect(body_json(patched)["context"] == {"env": "prod"}, f"patch: {patched.content!r}")
    relevance = api.call(
        "PUT",
        "/v1/agent-states/{thread_id}/relevance",
        [thread_id],
        body={"is_relevant": False},
        if_match="3",
    )
    expect(relevance.status_code == 200, f"relevance: {relevance.status_code} {relevance.content!r}")
    read = api.call("GET", thread_path, [thread_id], last_messages=1)
    expect(read.status_code == 200, f"get: {read.status_code} {read.content!r}")
    state = body_json(read)
    expect(
        (state["version"], state["message_count"], len(state["messages"]), state["is_relevant"])
        == (4, 3, 1, False),
        f"get: {read.content!r}",
    )
    expect(state["messages"][0]["tool_call_id"] == "c1", f"get: {read.content!r}")
    expect(read.headers.get("etag") == '"4"', f"get: ETag {read.headers.get('etag')!r}")
    listed: list[str] = []
    cursor = None
    while True:
        extra = {"limit": 100} if cursor is None else {"limit": 100, "cursor": cursor}
        page = api.call("GET", "/v1/agent-states", [], **extra)
        expect(page.status_code == 200, f"list: {page.status_code} {page.content!r}")
        listed += body_json(page)["thread_ids"]
        cursor = body_json(page)["next_cursor"]
        if cursor is None:
            break
    expect(thread_id in listed, f"list: {thread_id} not among {len(listed)} ids")
    recent = api.call("GET", "/v1/agent-states/recent", [], limit=1000)
    expect(recent.status_code == 200, f"recent: {recent.status_code} {recent.content!r}")
    expect(
        any(s["thread_id"] == thread_id for s in body_json(recent)["states"]),
        f"recent: {recent.content!r}",
    )
    extended = api.call(
        "POST", "/v1/agent-states/{thread_id}/extend-ttl", [thread_id], body={"ttl_seconds": 600}
    )
    expect(extended.status_code == 200, f"extend: {extended.status_code} {extended.content!r}")
    ttl = api.call("GET", "/v1/agent-states/{thread_id}/ttl", [thread_id])
    expect(ttl.status_code == 200, f"ttl: {ttl.status_code} {ttl.content!r}")
    expect(0 < body_json(ttl)["ttl_seconds"] <= 600, f"ttl: {ttl.content!r}")
    deleted = api.call("DELETE", thread_path, [thread_id])
    expect(deleted.status_code == 204, f"delete: {deleted.status_code} {deleted.content!r}")
    gone = api.call("GET", thread_path, [thread_id])
    expect(gone.status_code == 404, f"get deleted: {gone.status_code} {gone.content!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--spec", default="openapi.yaml")
    args = parser.parse_args()

    with open(args.spec, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    client = AuthenticatedClient(
        base_url=args.base_url, token=args.api_key, raise_on_unexpected_status=True
    )
    api = Api(client, spec)
    steps: list[tuple[str, Callable[[Api], None]]] = [
        ("health", step_health),
        ("cache: put, get, ttl, incr, delete", step_cache),
        (
            "pending action: create, get, confirm, retry, confirm again, cancel",
            step_pending_action,
        ),
        ("session: create, read back", step_session),
        (
            "agent state: create, append, If-Match, patch, relevance, get, list, recent, ttl,"
            " delete",
            step_agent_state,
        ),
        ("rate limit: check until denied, reset, peek", step_rate_limit),
        ("lock: acquire, held, get, fence check, release", step_lock),
        ("queue: enqueue, lease, ack, ack again, counts", step_queue),
        ("topic: publish, resume after Last-Event-ID", step_topic),
        ("usage: event, duplicate, totals, budget, reserve, refuse, commit", step_usage),
    ]
    passed = failed = skipped = 0
    for name, step in steps:
        try:
            step(api)
        except Skip as why:
            skipped += 1
            print(f"SKIP {name}: {why}")
        except Exception:  # noqa: BLE001 - every failure is reported, then counted
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"client smoke: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
