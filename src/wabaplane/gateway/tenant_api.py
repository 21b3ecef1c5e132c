"""The tenant-scoped API: a tenant's own deliveries and dead letters, and replay.

Every request authenticates with `Authorization: Bearer <tenant API key>`; every query is scoped to
that key's tenant, so another tenant's delivery answers exactly like one that does not exist.
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from typing import Any, cast, get_args

from aiohttp import web

from wabaplane.gateway import keys
from wabaplane.gateway.cluster import Key
from wabaplane.store import Conversation, Delivery, Message, State

WINDOW_SECONDS = 24 * 3600.0

MAX_PAGE = 500


class BadRequest(Exception):
    pass


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""


def authenticate(request: web.Request) -> Key | None:
    api_key = _bearer(request)
    return request.app[keys.VIEW].tenant_for_api_key(api_key) if api_key else None


def _time(name: str, value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise BadRequest(f"{name} must be Unix seconds or an RFC 3339 time, got {value!r}") from None


def _int(name: str, value: str | None, default: int | None, low: int, high: int) -> int | None:
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return int(value)


def _state(value: str | None) -> State | None:
    if value is None or value == "":
        return None
    if value not in get_args(State):
        raise BadRequest(f"state must be one of {', '.join(get_args(State))}, got {value!r}")
    return cast(State, value)


def _iso(value: float | None) -> str | None:
    return datetime.fromtimestamp(value).astimezone().isoformat() if value is not None else None


def describe(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "state": delivery.state,
        "field": delivery.field,
        "attempts": delivery.attempts,
        "createdAt": _iso(delivery.created_at),
        "nextAttemptAt": _iso(delivery.next_attempt_at) if delivery.state == "pending" else None,
        "deliveredAt": _iso(delivery.delivered_at),
        "lastStatus": delivery.last_status,
        "lastError": delivery.last_error,
        "payload": {
            "object": "whatsapp_business_account",
            "entry": [{"id": delivery.entry_id, "changes": [{"field": delivery.field,
                                                             "value": json.loads(delivery.value)}]}],
        },
    }  # fmt: skip


def tenant_route(handler: Any) -> Any:
    async def wrapped(request: web.Request) -> web.Response:
        tenant = authenticate(request)
        if tenant is None:
            return error(401, "unauthorized", "send the tenant API key as Authorization: Bearer <key>")
        try:
            response: web.Response = await handler(request, tenant)
        except BadRequest as problem:
            return error(400, "bad_request", str(problem))
        return response

    return wrapped


async def _list(request: web.Request, tenant: Key, state: State | None) -> web.Response:
    query = request.query
    limit = _int("limit", query.get("limit"), 100, 1, MAX_PAGE) or 100
    found = await request.app[keys.STORE].list_deliveries(
        *tenant,
        state=state,
        since=_time("since", query.get("since")),
        until=_time("until", query.get("until")),
        after=_int("after", query.get("after"), None, 0, 2**62),
        limit=limit,
    )
    page: dict[str, Any] = {"data": [describe(d) for d in found]}
    if len(found) == limit:
        page["next"] = str(found[-1].seq)
    return web.json_response(page)


@tenant_route
async def list_deliveries(request: web.Request, tenant: Key) -> web.Response:
    return await _list(request, tenant, _state(request.query.get("state")))


@tenant_route
async def list_dead_letters(request: web.Request, tenant: Key) -> web.Response:
    return await _list(request, tenant, "dead")


@tenant_route
async def get_delivery(request: web.Request, tenant: Key) -> web.Response:
    found = await request.app[keys.STORE].get_delivery(*tenant, request.match_info["id"])
    if found is None:
        return error(404, "not_found", "no such delivery")
    return web.json_response(describe(found))


@tenant_route
async def replay_one(request: web.Request, tenant: Key) -> web.Response:
    store = request.app[keys.STORE]
    delivery_id = request.match_info["id"]
    if await store.get_delivery(*tenant, delivery_id) is None:
        return error(404, "not_found", "no such delivery")
    count = await store.replay(*tenant, ids=[delivery_id], states=("dead", "delivered"))
    request.app[keys.DELIVERER].wake.set()
    return web.json_response({"replayed": count}, status=202)


@tenant_route
async def replay_range(request: web.Request, tenant: Key) -> web.Response:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise BadRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = set(body) - {"since", "until", "states"}
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}; allowed: since, until, states")
    since = _time("since", None if body.get("since") is None else str(body["since"]))
    if since is None:
        raise BadRequest("since is required (Unix seconds or RFC 3339), so a replay is always bounded")
    states = body.get("states", ["dead"])
    if not isinstance(states, list) or not states or any(s not in ("dead", "delivered") for s in states):
        raise BadRequest('states must be a non-empty list of "dead" and "delivered"')
    count = await request.app[keys.STORE].replay(
        *tenant,
        since=since,
        until=_time("until", None if body.get("until") is None else str(body["until"])),
        states=states,
    )
    request.app[keys.DELIVERER].wake.set()
    return web.json_response({"replayed": count}, status=202)


@tenant_route
async def enable_endpoint(request: web.Request, tenant: Key) -> web.Response:
    deliverer = request.app[keys.DELIVERER]
    count = await request.app[keys.STORE].enable_endpoint(*tenant)
    for key in [key for key in deliverer.disabled if key[:2] == tenant]:
        deliverer.disabled.pop(key)
    deliverer.wake.set()
    return web.json_response({"enabled": count})


async def list_unroutable(request: web.Request) -> web.Response:
    """Platform-wide (admin token): the units no tenant owns, with the reason."""
    expected = request.app[keys.SETTINGS].admin_token
    given = _bearer(request)
    if expected is None or not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        return error(401, "unauthorized", "send the gateway's admin token as Authorization: Bearer <token>")
    try:
        limit = _int("limit", request.query.get("limit"), 100, 1, MAX_PAGE) or 100
        after = _int("after", request.query.get("after"), None, 0, 2**62)
    except BadRequest as problem:
        return error(400, "bad_request", str(problem))
    found = await request.app[keys.STORE].unroutable(limit, after)
    return web.json_response({"data": [{"id": u.id, "receivedAt": _iso(u.received_at), "field": u.field,
                                        "entryId": u.entry_id, "reason": u.reason} for u in found]})  # fmt: skip


def _conversation(found: Conversation, now: float) -> dict[str, Any]:
    open_until = found.last_inbound_at + WINDOW_SECONDS if found.last_inbound_at is not None else None
    return {
        "id": found.id,
        "phoneNumberId": found.phone_number_id,
        "customer": found.customer,
        "createdAt": _iso(found.created_at),
        "lastMessageAt": _iso(found.last_message_at),
        "lastInboundAt": _iso(found.last_inbound_at),
        "window": {"open": open_until is not None and now < open_until,
                   "openUntil": _iso(open_until) if open_until is not None and now < open_until else None},
    }  # fmt: skip


def _message(found: Message) -> dict[str, Any]:
    return {
        "id": found.id,
        "conversationId": found.conversation_id,
        "direction": found.direction,
        "type": found.type,
        "category": found.category,
        "template": found.template,
        "status": found.status,
        "error": {"code": found.error_code, "title": found.error_title}
        if found.error_code is not None
        else None,
        "replyTo": found.context_id,
        "createdAt": _iso(found.created_at),
        "updatedAt": _iso(found.updated_at),
        "message": json.loads(found.body),
    }


@tenant_route
async def list_conversations(request: web.Request, tenant: Key) -> web.Response:
    limit = _int("limit", request.query.get("limit"), 100, 1, MAX_PAGE) or 100
    before = _time("before", request.query.get("before"))
    found = await request.app[keys.STORE].conversations(*tenant, limit=limit, before=before)
    now = request.app[keys.CLOCK]()
    page: dict[str, Any] = {"data": [_conversation(c, now) for c in found]}
    if len(found) == limit:
        page["next"] = str(found[-1].last_message_at)
    return web.json_response(page)


@tenant_route
async def list_conversation_messages(request: web.Request, tenant: Key) -> web.Response:
    store = request.app[keys.STORE]
    conversation = request.match_info["id"]
    if await store.conversation(*tenant, conversation) is None:
        return error(404, "not_found", "no such conversation")
    found = await store.conversation_messages(*tenant, conversation)
    return web.json_response({"data": [_message(m) for m in found]})


@tenant_route
async def get_message(request: web.Request, tenant: Key) -> web.Response:
    found = await request.app[keys.STORE].message(*tenant, request.match_info["id"])
    if found is None:
        return error(404, "not_found", "no such message")
    return web.json_response(_message(found))


@tenant_route
async def get_usage(request: web.Request, tenant: Key) -> web.Response:
    month = request.query.get("month") or datetime.now(UTC).strftime("%Y-%m")
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise BadRequest(f"month must look like 2026-11, got {month!r}") from None
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    usage = await request.app[keys.STORE].usage(*tenant, month, start.timestamp(), end.timestamp())
    return web.json_response({"month": month, "messages": usage.messages, "inbound": usage.inbound,
                              "conversations": usage.conversations, "refusals": usage.refusals})  # fmt: skip
