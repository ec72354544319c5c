"""The stack statekeeper replaces: FastAPI + redis-py (asyncio), written the way the seed
services write it, with the same routes and payloads as statekeeper for the benchmark.

Run: REDIS_URL=redis://127.0.0.1:6379/0 uvicorn app:app --workers N --port P
"""

import json
import time
import os
import secrets
import uuid
from datetime import datetime, timedelta, timezone

import redis.asyncio as redis
from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel

app = FastAPI()
pool = redis.ConnectionPool.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
r = redis.Redis(connection_pool=pool)
PREFIX = "reference"


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


@app.put("/v1/cache/{namespace}/{key}", status_code=204)
async def cache_put(namespace: str, key: str, request: Request, ttl_seconds: int = 3600):
    body = await request.body()
    json.loads(body)  # validate, as statekeeper does
    await r.set(f"{PREFIX}:cache:{namespace}:{key}", body, ex=ttl_seconds)
    return Response(status_code=204)


@app.get("/v1/cache/{namespace}/{key}")
async def cache_get(namespace: str, key: str):
    value = await r.get(f"{PREFIX}:cache:{namespace}:{key}")
    if value is None:
        raise HTTPException(404, "not found")
    return Response(content=value, media_type="application/json")


class PendingCreate(BaseModel):
    intent_name: str
    entities: dict = {}
    summary: str = ""
    ttl_seconds: int = 60


@app.post("/v1/pending-actions", status_code=201)
async def pending_create(body: PendingCreate):
    token = secrets.token_urlsafe(32)
    created = datetime.now(timezone.utc)
    action = {
        "token": token,
        "intent_name": body.intent_name,
        "entities": body.entities,
        "summary": body.summary,
        "created_at": created.isoformat(),
        "expires_at": (created + timedelta(seconds=body.ttl_seconds)).isoformat(),
        "status": "pending",
    }
    await r.set(f"{PREFIX}:pending:{token}", json.dumps(action), ex=body.ttl_seconds)
    return action


@app.post("/v1/pending-actions/{token}/confirm")
async def pending_confirm(token: str):
    # The seeds' exactly-once confirm: WATCH the key, read it, delete it in MULTI/EXEC.
    key = f"{PREFIX}:pending:{token}"
    async with r.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(key)
            raw = await pipe.get(key)
            if raw is None:
                raise HTTPException(404, "not found")
            pipe.multi()
            pipe.delete(key)
            await pipe.execute()
        except redis.WatchError:
            raise HTTPException(409, "already confirmed")
    return {"action": json.loads(raw), "confirmed_at": now()}


class SessionCreate(BaseModel):
    user_id: str
    data: dict = {}
    context: dict = {}
    ttl_seconds: int = 3600


@app.post("/v1/sessions", status_code=201)
async def session_create(body: SessionCreate):
    session = {
        "session_id": str(uuid.uuid4()),
        "user_id": body.user_id,
        "data": body.data,
        "context": body.context,
        "created_at": now(),
        "last_activity_at": now(),
        "version": 1,
    }
    await r.set(f"{PREFIX}:session:{session['session_id']}", json.dumps(session), ex=body.ttl_seconds)
    return session


@app.get("/v1/sessions/{session_id}")
async def session_get(session_id: str):
    raw = await r.get(f"{PREFIX}:session:{session_id}")
    if raw is None:
        raise HTTPException(404, "not found")
    return json.loads(raw)


class Append(BaseModel):
    messages: list[dict]


@app.post("/v1/agent-states/{thread_id}/messages")
async def agent_append(thread_id: str, body: Append):
    # The seeds' agent state: one JSON document, read, changed and written back whole.
    key = f"{PREFIX}:agent:{thread_id}"
    raw = await r.get(key)
    state = json.loads(raw) if raw else {"thread_id": thread_id, "messages": [], "version": 0}
    for message in body.messages:
        message.setdefault("created_at", now())
        state["messages"].append(message)
    state["version"] += 1
    state["updated_at"] = now()
    await r.set(key, json.dumps(state), ex=30 * 24 * 3600)
    return {"message_count": len(state["messages"]), "version": state["version"]}


@app.get("/v1/agent-states/{thread_id}")
async def agent_get(thread_id: str, last_messages: int | None = None):
    raw = await r.get(f"{PREFIX}:agent:{thread_id}")
    if raw is None:
        raise HTTPException(404, "not found")
    state = json.loads(raw)
    if last_messages is not None:
        state["messages"] = state["messages"][-last_messages:]
    state["message_count"] = len(state["messages"])
    return state


# The seeds' sliding-window limiter: one Lua script per check, the time from the client (as
# `int(time.time())` in the seed's README; here in milliseconds), one sorted-set entry per
# admitted request, the key expiring with its window.
RATE_LIMIT_SCRIPT = r.register_script(
    """
local key, limit, window, now, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, 0, now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
  return {1, limit - count - 1}
end
return {0, 0}
"""
)


class Rule(BaseModel):
    algorithm: str
    limit: int
    window_ms: int


class RateLimitCheck(BaseModel):
    rules: list[Rule]


@app.post("/v1/rate-limits/{key}/check")
async def rate_limit_check(key: str, body: RateLimitCheck):
    rule = body.rules[0]
    now_ms = int(time.time() * 1000)
    allowed, remaining = await RATE_LIMIT_SCRIPT(
        keys=[f"{PREFIX}:ratelimit:{key}"],
        args=[rule.limit, rule.window_ms, now_ms, uuid.uuid4().hex],
    )
    return {"allowed": bool(allowed), "rules": [{"limit": rule.limit, "remaining": remaining}]}


# The seeds' lock: SET NX PX with a random token, released by a compare-and-delete script.
RELEASE_SCRIPT = r.register_script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)


class LockAcquire(BaseModel):
    ttl_ms: int


@app.post("/v1/locks/{name}")
async def lock_acquire(name: str, body: LockAcquire):
    token = secrets.token_urlsafe(16)
    if not await r.set(f"{PREFIX}:lock:{name}", token, nx=True, px=body.ttl_ms):
        raise HTTPException(409, "lock held")
    return {"lock_token": token}


@app.delete("/v1/locks/{name}", status_code=204)
async def lock_release(name: str, request: Request):
    token = request.headers.get("lock-token", "")
    if not await RELEASE_SCRIPT(keys=[f"{PREFIX}:lock:{name}"], args=[token]):
        raise HTTPException(410, "lock lost")
    return Response(status_code=204)


# The seeds' queue: LPUSH to enqueue, RPOP to take (no lease, no ack: a worker that dies loses
# the job). The ack route answers and does nothing, so the benchmark's cycle is the same.
class JobIn(BaseModel):
    payload: dict | list | str | int | float | bool | None


class LeaseIn(BaseModel):
    visibility_ms: int = 30000


@app.post("/v1/queues/{queue}/jobs", status_code=201)
async def queue_enqueue(queue: str, body: JobIn):
    job_id = str(uuid.uuid4())
    await r.lpush(f"{PREFIX}:queue:{queue}", json.dumps({"job_id": job_id, "payload": body.payload}))
    return {"job_id": job_id}


@app.post("/v1/queues/{queue}/lease")
async def queue_lease(queue: str, body: LeaseIn):
    raw = await r.rpop(f"{PREFIX}:queue:{queue}")
    if raw is None:
        return {"jobs": []}
    job = json.loads(raw)
    job["lease_token"] = "none"
    return {"jobs": [job]}


@app.post("/v1/queues/{queue}/jobs/{job_id}/ack")
async def queue_ack(queue: str, job_id: str):
    return {"state": "done"}


# The seeds' metering: INCRBY a counter per subject, metric and day, from each request. No
# dedup (a retried request counts twice), and nothing is checked before spending: a "budget"
# is read after the fact. The reserve route counts the amount, the commit route answers and
# does nothing, so the benchmark's cycle is the same two requests.
class UsageIn(BaseModel):
    event_id: str
    metric: str
    amount: int


class ReserveIn(BaseModel):
    amount: int
    ttl_ms: int = 60000


class CommitIn(BaseModel):
    amount: int


def usage_key(subject: str, metric: str) -> str:
    return f"{PREFIX}:usage:{subject}:{metric}:{datetime.now(timezone.utc):%Y-%m-%d}"


@app.post("/v1/usage/{subject}/events", status_code=201)
async def usage_event(subject: str, body: UsageIn):
    await r.incrby(usage_key(subject, body.metric), body.amount)
    return {"counted": True}


@app.post("/v1/budgets/{subject}/{metric}/reserve", status_code=201)
async def budget_reserve(subject: str, metric: str, body: ReserveIn):
    await r.incrby(usage_key(subject, metric), body.amount)
    return {"reservation_id": str(uuid.uuid4()), "remaining": None}


@app.post("/v1/budgets/{subject}/{metric}/reservations/{reservation_id}/commit")
async def budget_commit(subject: str, metric: str, reservation_id: str, body: CommitIn):
    return {"committed": body.amount, "returned": 0}
