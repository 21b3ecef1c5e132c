"""The tenants' send API: Meta's `POST /{version}/{phone-number-id}/messages`, policed first.

In order, before Meta is called: the API key's tenant must own the number (another tenant's number
answers exactly like one that does not exist), be Ready and not suspended; free-form messages need
the customer's 24-hour window; templates must exist for the tenant, be APPROVED and get the right
number of parameters; then the tenant's quota and Meta's limits. Refusals use Meta's envelope and
Meta's code where Meta has one, with a message that says the gateway refused. What Meta answers is
passed through unchanged, so SDKs behave as against Meta.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from wabaplane.gateway import keys
from wabaplane.gateway.delivery import tenant_label
from wabaplane.gateway.limits import MESSAGING_LIMIT_CODE, MONTHLY_CAP_CODE, Refusal, messaging_limit
from wabaplane.gateway.routing import NumberInfo, TenantInfo, digits, language_key
from wabaplane.gateway.shared_limits import SharedLimits
from wabaplane.gateway.tenant_api import WINDOW_SECONDS, authenticate
from wabaplane.meta.envelope import GraphError, not_found
from wabaplane.store import MessageRecord, conversation_id
from wabaplane.store.messagelog import month_of

logger = logging.getLogger("wabaplane.gateway.sending")
SUSPENDED_CODE = 4030001
REFUSED = "wabaplane gateway refused the send: "
# A tenant's sends wait for one of its own slots (its burst, at most this many), so a tenant whose calls
# hang at Meta holds only its own slots and never delays another tenant's send.
MAX_SENDS_IN_FLIGHT_PER_TENANT = 64
Refuse = Callable[..., Awaitable[web.Response]]


def meta_error(error: GraphError, status: int, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return web.json_response(error.envelope(), status=status, headers=headers)


def refusal(details: str, code: int, status: int, retry_after: float | None = None) -> web.Response:
    error = GraphError(code=code, details=REFUSED + details, message=f"(#{code}) {REFUSED}{details}",
                       error_type="WabaplaneException" if code >= 4000000 else "OAuthException")  # fmt: skip
    return meta_error(error, status, retry_after)


async def send(request: web.Request) -> web.Response:
    app = request.app
    metrics, store, clock = app[keys.METRICS], app[keys.STORE], app[keys.CLOCK]
    phone_id = request.match_info["phone_id"]
    tenant_key = authenticate(request)
    if tenant_key is None:
        return meta_error(GraphError(code=190, details="the gateway does not know this API key",
                                     message="Invalid OAuth access token - the gateway does not know this API key"),
                          401)  # fmt: skip
    snapshot = app[keys.VIEW].snapshot
    tenant = snapshot.tenants.get(tenant_key)
    number = next(
        (n for n in snapshot.by_phone_id.get(phone_id, []) if (n.namespace, n.tenant) == tenant_key), None
    )
    if tenant is None or number is None:
        return meta_error(not_found(phone_id, "POST"), 400)
    label = tenant_label(*tenant_key)
    now = clock()

    async def refuse(
        reason: str, details: str, code: int, status: int, retry_after: float | None = None
    ) -> web.Response:
        metrics.child(metrics.refusals, label, reason).inc()
        await store.count_refusal(*tenant_key, month_of(now)[0], reason)
        return refusal(details, code, status, retry_after)

    if not number.routable:
        return await refuse("number_not_ready", f"phone number {phone_id} is not Ready (PhoneNumber "
                            f"{number.namespace}/{number.name})", 133010, 400)  # fmt: skip
    if tenant.suspended:
        return await refuse("suspended", f"tenant {label} is suspended", SUSPENDED_CODE, 403)
    try:
        body = await request.json()
    except ValueError:
        return meta_error(GraphError(code=100, details="the body must be a JSON object"), 400)
    if not isinstance(body, dict):
        return meta_error(GraphError(code=100, details="the body must be a JSON object"), 400)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None:
        if not 0 < len(idempotency_key) <= 255:
            return meta_error(
                GraphError(code=100, details="Idempotency-Key must have 1 to 255 characters"), 400
            )
        request_hash = hashlib.sha256(json.dumps([phone_id, body], sort_keys=True).encode()).hexdigest()
        earlier = await store.remember_key(*tenant_key, idempotency_key, request_hash,
                                           app[keys.SETTINGS].idempotency_seconds)  # fmt: skip
        if earlier is not None:
            if earlier.request_hash != request_hash:
                return meta_error(GraphError(code=100, details="this Idempotency-Key was used with a different "
                                             "request; use a new key for a new message"), 422)  # fmt: skip
            if earlier.status is None:
                return meta_error(GraphError(code=100, details="a request with this Idempotency-Key is still in "
                                             "progress; retry shortly"), 409, 1)  # fmt: skip
            return web.Response(text=earlier.response or "", status=earlier.status, content_type="application/json",
                                headers={"Idempotent-Replayed": "true"})  # fmt: skip
    try:
        response = await _policed_send(request, tenant, number, body, now, refuse)
    except BaseException:
        if idempotency_key is not None:
            await asyncio.shield(store.settle_key(*tenant_key, idempotency_key, None, None))
        raise
    if idempotency_key is not None:
        # Only an answer from Meta (or a timeout, where Meta may have sent) is remembered; a
        # refusal or an unreachable Meta sent nothing, so the same key may try again.
        remembered = (
            response.headers.get("X-Wabaplane-Source") == "meta"
            or response.headers.get("X-Wabaplane-Outcome") == "unknown"
        )
        await store.settle_key(*tenant_key, idempotency_key, response.status if remembered else None,
                               response.text if remembered else None)  # fmt: skip
    return response


async def _policed_send(request: web.Request, tenant: TenantInfo, number: NumberInfo, body: dict[str, Any],
                        now: float, refuse: Refuse) -> web.Response:  # fmt: skip
    app = request.app
    store, metrics = app[keys.STORE], app[keys.METRICS]
    label = tenant_label(*tenant.key)
    if body.get("status") == "read":
        return await _forward(request, tenant, number, body, None)
    customer = digits(body.get("to"))
    if not customer:
        return meta_error(GraphError(code=131008, details="The parameter to is required"), 400)
    kind = str(body.get("type") or "text")
    conversation = conversation_id(tenant.namespace, tenant.name, number.phone_number_id, customer)
    limit = messaging_limit(number.messaging_limit)
    known = await store.send_context(
        conversation=conversation, namespace=tenant.namespace, tenant=tenant.name,
        phone_number_id=number.phone_number_id, customer=customer, now=now, reach_since=now - WINDOW_SECONDS,
        count_reach=kind == "template" and limit is not None,
    )  # fmt: skip
    window_open = known.last_inbound is not None and now - known.last_inbound < WINDOW_SECONDS
    category = "service"
    template_name = None
    if kind != "template" and not window_open:
        return await refuse("window_closed", f"the customer {customer} has not written to this number in the last "
                            "24 hours, so only an approved template may be sent", 131047, 400)  # fmt: skip
    if kind == "template":
        checked = _check_template(app, tenant, body.get("template"))
        if isinstance(checked, Refusal):
            return await refuse(checked.reason, checked.details, checked.code, checked.http_status)
        category, template_name = checked
    monthly = tenant.monthly_messages
    month, _ = month_of(now)
    if monthly is not None and known.sent_this_month >= monthly:
        return await refuse("monthly_cap", f"the tenant's cap of {monthly} messages in {month} is reached",
                            MONTHLY_CAP_CODE, 429)  # fmt: skip
    business_initiated = kind == "template" and not window_open
    if (
        business_initiated
        and limit is not None
        and not known.customer_reached
        and (known.reached or 0) >= limit
    ):
        return await refuse("messaging_limit", f"phone number {number.phone_number_id} reached {limit} customers "
                            "outside a service window in the last 24 hours (its messaging limit)",
                            MESSAGING_LIMIT_CODE, 429)  # fmt: skip
    limiter = app[keys.LIMITS]
    refused = (
        await limiter.check(tenant, number, customer, now)
        if isinstance(limiter, SharedLimits)
        else limiter.check(tenant, number, customer, now)
    )
    if refused is not None:
        return await refuse(
            refused.reason, refused.details, refused.code, refused.http_status, refused.retry_after
        )
    context = body.get("context")
    record = MessageRecord(
        id="", namespace=tenant.namespace, tenant=tenant.name, phone_number_id=number.phone_number_id,
        customer=customer, direction="outbound", type=kind[:32], body=json.dumps(body, separators=(",", ":")),
        status="accepted", category=category, business_initiated=business_initiated, template=template_name,
        context_id=str(context.get("message_id")) if isinstance(context, dict) and context.get("message_id") else None,
    )  # fmt: skip
    metrics.child(metrics.sends, label, kind[:32]).inc()
    return await _forward(request, tenant, number, body, record)


def _check_template(app: web.Application, tenant: TenantInfo, template: Any) -> tuple[str, str] | Refusal:
    if not isinstance(template, dict) or not template.get("name"):
        return Refusal(
            "template_invalid", 131008, 400, "template.name and template.language.code are required"
        )
    language = template.get("language")
    code = language.get("code") if isinstance(language, dict) else None
    if not code:
        return Refusal("template_invalid", 131008, 400, "template.language.code is required")
    name = str(template["name"])
    found = app[keys.VIEW].snapshot.templates.get(
        (tenant.namespace, tenant.name, name, language_key(str(code)))
    )
    if found is None or found.status != "APPROVED":
        state = "does not exist" if found is None else f"is {found.status or 'not yet synced'}, not APPROVED"
        code_for = {"PAUSED": 132015, "DISABLED": 132016}.get(found.status or "", 132001) if found else 132001
        return Refusal("template_not_approved", code_for, 404 if code_for == 132001 else 400,
                       f"template {name} in {code} {state} for this tenant")  # fmt: skip
    sent: dict[str, int] = {}
    for component in template.get("components") or []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() in {"BODY", "HEADER"}:
            parameters = component.get("parameters")
            sent[str(component["type"]).upper()] = len(parameters) if isinstance(parameters, list) else 0
    for part, expected in (("BODY", found.body_parameters), ("HEADER", found.header_parameters)):
        if sent.get(part, 0) != expected:
            return Refusal("template_parameters", 132000, 400,
                           f"template {name} expects {expected} {part.lower()} parameters, got {sent.get(part, 0)}")  # fmt: skip
    return (found.category or "unknown").lower(), name


async def _forward(request: web.Request, tenant: TenantInfo, number: NumberInfo, body: dict[str, Any],
                   record: MessageRecord | None) -> web.Response:  # fmt: skip
    app = request.app
    store, metrics, settings = app[keys.STORE], app[keys.METRICS], app[keys.SETTINGS]
    label = tenant_label(*tenant.key)
    token = app[keys.VIEW].tenant_token(tenant.key)
    if token is None:
        return refusal(f"the Meta token of tenant {label} is not available yet", 131016, 503, 5)
    url = (
        f"{settings.graph_url.rstrip('/')}/{request.match_info['version']}/{number.phone_number_id}/messages"
    )
    semaphore = app[keys.SEND_SLOTS].setdefault(
        tenant.key, asyncio.Semaphore(max(1, min(tenant.burst, MAX_SENDS_IN_FLIGHT_PER_TENANT)))
    )
    started = time.monotonic()
    async with semaphore:
        try:
            async with app[keys.GRAPH].post(
                url, json=body, headers={"Authorization": f"Bearer {token}"}
            ) as reply:
                answer = Answer(reply.status, await reply.read(), reply.headers.get("Content-Type"),
                                reply.headers.get("Retry-After"))  # fmt: skip
        except aiohttp.ClientConnectorError:
            metrics.child(metrics.meta_errors, label, "unreachable").inc()
            return refusal("Meta could not be reached; nothing was sent", 131016, 503, 5)
        except (aiohttp.ClientError, TimeoutError) as error:
            metrics.child(metrics.meta_errors, label, "unknown").inc()
            logger.warning("send for %s: outcome unknown: %s", label, type(error).__name__)
            response = refusal("Meta did not answer in time; the message may have been sent, check its status "
                               "before sending it again", 131016, 504)  # fmt: skip
            response.headers["X-Wabaplane-Outcome"] = "unknown"
            return response
    metrics.child(metrics.send_seconds, label).observe(time.monotonic() - started)
    try:
        payload = json.loads(answer.content)
    except ValueError:
        payload = None
    if answer.is_success and record is not None and isinstance(payload, dict):
        sent = payload.get("messages") if isinstance(payload.get("messages"), list) else []
        if sent and isinstance(sent[0], dict) and sent[0].get("id"):
            await store.log_message(MessageRecord(**{**record.__dict__, "id": str(sent[0]["id"])}))
    elif not answer.is_success:
        code = (payload or {}).get("error", {}).get("code") if isinstance(payload, dict) else None
        metrics.child(metrics.meta_errors, label, str(code)).inc()
    response = web.Response(body=answer.content, status=answer.status,
                            content_type=(answer.content_type or "application/json").split(";")[0],
                            headers={"X-Wabaplane-Source": "meta"})  # fmt: skip
    if answer.retry_after is not None:
        response.headers["Retry-After"] = answer.retry_after
    return response


@dataclass(frozen=True)
class Answer:
    """Meta's answer to a forwarded send, read in full."""

    status: int
    content: bytes
    content_type: str | None
    retry_after: str | None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300
