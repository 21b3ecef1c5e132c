"""Meta's single webhook: the verification handshake and the signed event POSTs of every tenant.

Order matters: the signature is checked on the raw bytes before anything is parsed (a forged body
never reaches the dedupe keys), and Meta gets its 200 only after the whole request's units are
committed. Anything Meta could fix by retrying (store down, routing table not loaded yet,
overload) answers 503 so Meta retries; a client's mistake answers 4xx; nothing answers 500.
"""

from __future__ import annotations

import hmac
import json
import logging
import time

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from wabaplane.gateway import keys
from wabaplane.gateway.conversations import logs_for
from wabaplane.gateway.delivery import tenant_label
from wabaplane.gateway.routing import route
from wabaplane.gateway.signing import verify_hub_signature
from wabaplane.gateway.units import MalformedEnvelope, split
from wabaplane.store import NewUnit, StoreUnavailable

logger = logging.getLogger("wabaplane.gateway.ingest")


def problem(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "status": status}}, status=status, headers=headers
    )


async def handshake(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    query = request.query
    expected = settings.verify_token.get_secret_value() if settings.verify_token else None
    given = query.get("hub.verify_token", "")
    if (
        query.get("hub.mode") != "subscribe"
        or expected is None
        or not hmac.compare_digest(given.encode(), expected.encode())
    ):
        return problem(403, "verification failed: hub.mode must be subscribe and hub.verify_token must match")
    return web.Response(text=query.get("hub.challenge", ""), content_type="text/plain")


async def receive(request: web.Request) -> web.Response:
    app = request.app
    settings, metrics = app[keys.SETTINGS], app[keys.METRICS]
    started = time.monotonic()
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        metrics.requests.labels(outcome="too_large").inc()
        return problem(413, f"the body exceeds {settings.max_body_bytes} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.requests.labels(outcome="too_large").inc()
        return problem(413, f"the body exceeds {settings.max_body_bytes} bytes")
    secrets = [secret.get_secret_value() for secret in settings.app_secrets]
    if not verify_hub_signature(body, request.headers.get("X-Hub-Signature-256"), secrets):
        metrics.requests.labels(outcome="bad_signature").inc()
        metrics.signature_failures.inc()
        logger.warning("webhook with a missing or wrong X-Hub-Signature-256 refused")
        return problem(401, "missing or wrong X-Hub-Signature-256")
    try:
        units = split(json.loads(body))
    except (ValueError, RecursionError) as error:
        metrics.requests.labels(outcome="malformed").inc()
        message = str(error) if isinstance(error, MalformedEnvelope) else "the body is not valid JSON"
        return problem(400, message)
    view = app[keys.VIEW]
    if not view.synced:
        metrics.requests.labels(outcome="not_ready").inc()
        return problem(503, "the routing table is still loading; retry", {"Retry-After": "1"})
    snapshot = view.snapshot
    operator = settings.operator_url is not None
    batch = []
    for unit in units:
        metrics.child(metrics.received, unit.field[:100]).inc()
        decision = route(unit, snapshot, operator=operator)
        batch.append(
            NewUnit(
                dedupe_key=unit.dedupe_key,
                field=unit.field,
                entry_id=unit.entry_id,
                entry_time=unit.entry_time,
                value=json.dumps(unit.value, separators=(",", ":")),
                namespace=decision.namespace,
                tenant=decision.tenant,
                unroutable_reason=decision.reason,
                targets=decision.targets,
                logs=logs_for(unit, decision),
            )
        )
    try:
        result = await app[keys.STORE].ingest(batch)
    except (SQLAlchemyError, OSError, StoreUnavailable) as error:
        metrics.requests.labels(outcome="store_unavailable").inc()
        logger.error("store unavailable, Meta will retry: %s", type(error).__name__)
        return problem(503, "the event store is unavailable; retry", {"Retry-After": "5"})
    counted: set[str] = set()
    for stored in batch:
        if stored.dedupe_key not in result.new_keys or stored.dedupe_key in counted:
            outcome, label = "duplicate", ""
        elif stored.tenant is None:
            outcome, label = "unroutable", ""
            logger.info(
                "unroutable %s unit from entry %s: %s",
                stored.field,
                stored.entry_id,
                stored.unroutable_reason,
            )
        else:
            outcome, label = "routed", tenant_label(stored.namespace or "", stored.tenant)
        counted.add(stored.dedupe_key)
        metrics.child(metrics.units, outcome, label).inc()
    if result.deliveries:
        app[keys.DELIVERER].wake.set()
    metrics.child(metrics.requests, "accepted").inc()
    metrics.ingest_seconds.observe(time.monotonic() - started)
    return web.json_response({"units": len(batch), "stored": result.stored, "duplicates": result.duplicates})
