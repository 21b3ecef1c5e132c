"""The internal endpoint where the gateway forwards Meta's management events.

`POST /v1/management-events` with `Authorization: Bearer <management token>` and a Meta webhook
envelope. Each change is applied to the status of the object it concerns, once: an event older
than the one the status already reflects is ignored. Events for unknown objects are logged and
counted, never errors.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wabaplane.operator import messagetemplate, reasons
from wabaplane.operator.context import Clients, StatusBook, as_body, post_event
from wabaplane.operator.kube import Kube
from wabaplane.operator.metrics import MANAGEMENT_EVENTS

logger = logging.getLogger("wabaplane.operator.management")
CLIENTS_KEY = web.AppKey("clients", Clients)
# Status fields stamped with the Meta time of the last event applied to the object.
LAST_EVENT = "lastEventTime"
TEMPLATE_STATUSES = {"APPROVED", "REJECTED", "PENDING", "PAUSED", "DISABLED", "FLAGGED", "IN_APPEAL", "REINSTATED",
                     "PENDING_DELETION", "ARCHIVED", "LIMIT_EXCEEDED", "LOCKED", "DELETED"}  # fmt: skip


def create_app(shared: Clients) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[CLIENTS_KEY] = shared
    app.router.add_post("/v1/management-events", receive)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def metrics(_: web.Request) -> web.Response:
    """The operator's Prometheus metrics (reconciles, management events), for the chart's ServiceMonitor."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def receive(request: web.Request) -> web.Response:
    shared = request.app[CLIENTS_KEY]
    expected = shared.settings.management_token
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return web.json_response({"error": "missing or wrong bearer token"}, status=401)
    try:
        envelope = await request.json()
        entries = envelope["entry"]
        changes = [(entry, change) for entry in entries for change in entry["changes"]]
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "the body must be a Meta webhook envelope with entry[].changes[]"},
                                 status=400)  # fmt: skip
    outcomes = []
    for entry, change in changes:
        field = str(change.get("field"))
        try:
            outcome = await apply(
                shared, str(entry.get("id")), int(entry.get("time") or 0), field, change.get("value") or {}
            )
        except kopf.PermanentError as error:
            outcome = f"rejected: {error}"
        MANAGEMENT_EVENTS.labels(field=field, outcome=outcome.split(":")[0]).inc()
        outcomes.append({"field": field, "outcome": outcome})
    return web.json_response({"results": outcomes})


async def apply(shared: Clients, entry_id: str, event_time: int, field: str, value: dict[str, Any]) -> str:
    if field in {
        "message_template_status_update",
        "message_template_quality_update",
        "template_category_update",
    }:
        return await _template_event(shared, event_time, field, value)
    if field in {"phone_number_quality_update", "phone_number_name_update", "security"}:
        return await _phone_event(shared, entry_id, event_time, field, value)
    if field == "account_update":
        waba_id = str((value.get("waba_info") or {}).get("waba_id") or entry_id)
        tenant = await _tenant_by_waba(shared.kube, waba_id, shared.settings.namespaces)
        if tenant is None:
            logger.info("account_update %s for WABA %s: no Tenant", value.get("event"), waba_id)
            return "unknown"
        post_event(True, as_body(tenant), "AccountUpdate", f"Meta reports account event {value.get('event')}")
        return "applied"
    logger.info("management event %s ignored: nothing in status reflects it", field)
    return "ignored"


async def _list(kube: Kube, plural: str, namespaces: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return await kube.list_objects(plural, namespaces)


async def _tenants_by_waba(kube: Kube, waba_id: str, namespaces: tuple[str, ...]) -> list[dict[str, Any]]:
    return [t for t in await _list(kube, "tenants", namespaces) if t["spec"]["wabaId"] == waba_id]


async def _tenant_by_waba(kube: Kube, waba_id: str, namespaces: tuple[str, ...]) -> dict[str, Any] | None:
    """The oldest Tenant claiming the WABA."""
    tenants = sorted(
        await _tenants_by_waba(kube, waba_id, namespaces), key=lambda t: t["metadata"]["creationTimestamp"]
    )
    return tenants[0] if tenants else None


def _stale(obj: dict[str, Any], event_time: int) -> bool:
    last = int((obj.get("status") or {}).get(LAST_EVENT) or 0)
    return bool(event_time) and event_time < last


async def _template_event(shared: Clients, event_time: int, field: str, value: dict[str, Any]) -> str:
    template_id = str(value.get("message_template_id"))
    obj = next((t for t in await _list(shared.kube, "messagetemplates", shared.settings.namespaces)
                if (t.get("status") or {}).get("templateId") == template_id), None)  # fmt: skip
    if obj is None:
        logger.info("%s for unknown template %s", field, template_id)
        return "unknown"
    if _stale(obj, event_time):
        return "stale"
    book = StatusBook.of(as_body(obj))
    status = obj.get("status") or {}
    book.fields = {
        key: status.get(key) for key in ("templateId", "templateStatus", "category", "rejectedReason")
    }
    if field == "message_template_status_update":
        event = str(value.get("event"))
        if event in TEMPLATE_STATUSES:
            book.fields["templateStatus"] = event
            reason = value.get("reason")
            book.fields["rejectedReason"] = (
                reason if event == "REJECTED" and reason not in {None, "NONE"} else None
            )
    elif field == "message_template_quality_update":
        book.fields["qualityScore"] = value.get("new_quality_score")
    else:
        book.fields["category"] = value.get("new_category")
    if event_time:
        book.fields[LAST_EVENT] = event_time
    messagetemplate._summarise(book)
    await shared.kube.patch_status("messagetemplates", obj["metadata"]["namespace"], obj["metadata"]["name"],
                                   {**book.fields, "conditions": book.current})  # fmt: skip
    return "applied"


async def _phone_event(
    shared: Clients, entry_id: str, event_time: int, field: str, value: dict[str, Any]
) -> str:
    display = "".join(ch for ch in str(value.get("display_phone_number", "")) if ch.isdigit())
    owners = {
        (t["metadata"]["namespace"], t["metadata"]["name"])
        for t in await _tenants_by_waba(shared.kube, entry_id, shared.settings.namespaces)
    }
    obj = next(
        (p for p in await _list(shared.kube, "phonenumbers", shared.settings.namespaces)
         if (p["metadata"]["namespace"], p["spec"]["tenantRef"]["name"]) in owners
         and "".join(ch for ch in str((p.get("status") or {}).get("displayPhoneNumber", "")) if ch.isdigit()) == display),
        None,
    )  # fmt: skip
    if obj is None:
        logger.info("%s for unknown number in WABA %s", field, entry_id)
        return "unknown"
    if _stale(obj, event_time):
        return "stale"
    update: dict[str, Any] = {}
    if field == "phone_number_quality_update":
        limit = value.get("max_daily_conversations_per_business") or value.get("current_limit")
        if limit is not None:
            update["messagingLimit"] = str(limit)
        if value.get("event") == "THROUGHPUT_UPGRADE":
            update["throughputLevel"] = "HIGH"
        if value.get("event") in {"FLAGGED", "UNFLAGGED"}:
            update["qualityRating"] = "RED" if value["event"] == "FLAGGED" else "GREEN"
        post_event(False, as_body(obj), "QualityUpdate", f"Meta: {value.get('event')} (limit {limit})")
    elif field == "phone_number_name_update":
        update["nameStatus"] = value.get("decision")
        if value.get("decision") == "APPROVED" and value.get("requested_verified_name"):
            update["verifiedName"] = value["requested_verified_name"]
    else:
        post_event(True, as_body(obj), "SecurityEvent", f"Meta reports {value.get('event')} for this number")
    if event_time:
        update[LAST_EVENT] = event_time
    await shared.kube.patch_status(
        "phonenumbers", obj["metadata"]["namespace"], obj["metadata"]["name"], update
    )
    return "applied"


__all__ = ["create_app", "reasons"]
