"""Schemathesis hooks for the contract run (loaded through SCHEMATHESIS_HOOKS=hooks).

The restore route takes a backup file: NDJSON, one `BackupLine` per line (openapi.yaml
describes the body as the array of its lines). Schemathesis has no NDJSON serializer, so this
one writes each drawn line as a line of JSON. For a body drawn to fit the schema (positive), it
writes a file the service can read: a header, the drawn records with the key's tenant (a
restore takes only that tenant's items), and a trailer that counts them and holds their
SHA-256. So every drawn record reaches the record checks and the writes behind them - the same
door REST and MCP go through - and any 500 there fails the run. A body drawn to break the
schema (negative) is written as drawn, and must be refused.
"""

import datetime
import hashlib
import json

import schemathesis
from schemathesis.generation import GenerationMode

TENANT = "contract"


def _line(item) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode() + b"\n"


def _positive(ctx) -> bool:
    meta = getattr(ctx.case, "meta", None)
    generation = getattr(meta, "generation", None)
    return getattr(generation, "mode", None) == GenerationMode.POSITIVE


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if not isinstance(value, list):
        if isinstance(value, (bytes, bytearray)):
            return {"data": bytes(value)}
        text = value if isinstance(value, str) else json.dumps(value)
        return {"data": text.encode()}
    if not _positive(ctx):
        return {"data": b"".join(_line(item) for item in value)}
    records = [
        dict(item, tenant=TENANT)
        for item in value
        if isinstance(item, dict) and "capability" in item
    ]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = _line({"format": "statekeeper-backup", "version": 1, "created_at": now})
    body += b"".join(_line(record) for record in records)
    trailer = {"count": len(records), "sha256": hashlib.sha256(body).hexdigest()}
    return {"data": body + _line(trailer)}
