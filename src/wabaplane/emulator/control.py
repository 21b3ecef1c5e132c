"""The control API under `/_emulator/`: what tests and demos use to play Meta's other side.

Never on Meta's paths. Bad input answers 400 with a message saying what to fix.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wabaplane.emulator import seed as seed_module
from wabaplane.emulator.graph import EMULATOR_KEY, FAULTS_KEY, Fault
from wabaplane.emulator.state import Template
from wabaplane.meta.envelope import GraphError

routes = web.RouteTableDef()
M = TypeVar("M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignupCodeRequest(_Body):
    business_id: str
    waba_ids: list[str] = Field(min_length=1)
    expires_in: int | None = Field(default=None, ge=1)


class TokenRequest(_Body):
    waba_ids: list[str]
    messaging_waba_ids: list[str] | None = None
    kind: Literal["SYSTEM_USER", "BUSINESS_INTEGRATION", "USER"] = "SYSTEM_USER"
    expires_in: int | None = Field(default=None, ge=1)
    value: str | None = None


class RevokeRequest(_Body):
    access_token: str


class InboundRequest(_Body):
    phone_number_id: str
    sender: str = Field(alias="from", pattern=r"^\+?[0-9]+$")
    name: str = "Customer"
    text: str | None = None
    message: dict[str, Any] | None = Field(
        default=None, description="A raw message object: type and its payload."
    )


class PhoneUpdate(_Body):
    quality_rating: Literal["GREEN", "YELLOW", "RED", "UNKNOWN"] | None = None
    messaging_limit: str | None = None
    throughput_level: Literal["STANDARD", "HIGH", "NOT_APPLICABLE"] | None = None
    name_status: str | None = None
    status: str | None = None
    event: str | None = Field(default=None, description="phone_number_quality_update event, e.g. FLAGGED.")


class ReviewRequest(_Body):
    status: Literal["APPROVED", "REJECTED", "PAUSED", "DISABLED", "FLAGGED", "REINSTATED", "PENDING_DELETION"]
    reason: str | None = None


class QualityRequest(_Body):
    score: Literal["GREEN", "YELLOW", "RED", "UNKNOWN"]


class EmitRequest(_Body):
    waba_id: str
    field: str
    value: dict[str, Any]
    entry_id: str | None = None
    phone_number_id: str | None = None


class CallbackRequest(_Body):
    url: str
    verify_token: str | None = None
    fields: list[str] | None = None


class FaultRequest(_Body):
    method: str = "*"
    path: str = Field(description="A regular expression searched in the request path.")
    count: int = Field(default=1, ge=1)
    code: int | None = None
    http_status: int | None = Field(default=None, ge=400, le=599)
    latency_ms: int = Field(default=0, ge=0, le=60000)
    reset: bool = False
    hold: bool = Field(default=False, description="Matching calls wait until the faults are cleared.")


async def _parse(request: web.Request, model: type[M]) -> M:
    try:
        raw = await request.json() if request.can_read_body else {}
        return model.model_validate(raw)
    except json.JSONDecodeError as error:
        raise _bad_request(f"the body is not valid JSON: {error}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise _bad_request(problems) from None


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _graph_error(error: GraphError) -> web.HTTPException:
    return web.HTTPBadRequest(text=json.dumps(error.envelope()), content_type="application/json")


@routes.get("/_emulator/")
async def index(request: web.Request) -> web.Response:
    return web.json_response({
        "endpoints": [f"{route.method} {route.path}" for route in routes if isinstance(route, web.RouteDef)]
    })  # fmt: skip


@routes.post("/_emulator/seed")
async def seed(request: web.Request) -> web.Response:
    document = await _parse(request, seed_module.Seed)
    try:
        return web.json_response(seed_module.apply(request.app[EMULATOR_KEY], document))
    except (ValueError, GraphError) as error:
        raise _bad_request(str(error)) from None


@routes.post("/_emulator/signup-codes")
async def signup_code(request: web.Request) -> web.Response:
    body = await _parse(request, SignupCodeRequest)
    try:
        code = request.app[EMULATOR_KEY].issue_signup_code(body.business_id, body.waba_ids, body.expires_in)
    except GraphError as error:
        raise _graph_error(error) from None
    return web.json_response({"code": code})


@routes.post("/_emulator/tokens")
async def token(request: web.Request) -> web.Response:
    body = await _parse(request, TokenRequest)
    emulator = request.app[EMULATOR_KEY]
    unknown = [w for w in body.waba_ids if w not in emulator.world.wabas]
    if unknown:
        raise _bad_request(f"unknown WABA ids: {unknown}")
    issued = emulator.issue_token(
        kind=body.kind,
        waba_ids=body.waba_ids,
        messaging_waba_ids=body.messaging_waba_ids,
        expires_in=body.expires_in,
        value=body.value,
    )
    return web.json_response({"access_token": issued.value, "expires_at": issued.expires_at})


@routes.post("/_emulator/tokens/revoke")
async def revoke(request: web.Request) -> web.Response:
    body = await _parse(request, RevokeRequest)
    found = request.app[EMULATOR_KEY].world.tokens.get(body.access_token)
    if found is None:
        raise _bad_request("unknown access_token")
    found.revoked = True
    return web.json_response({"success": True})


@routes.post("/_emulator/inbound")
async def inbound(request: web.Request) -> web.Response:
    body = await _parse(request, InboundRequest)
    if (body.text is None) == (body.message is None):
        raise _bad_request("give exactly one of text or message")
    message = body.message if body.message is not None else {"type": "text", "text": {"body": body.text}}
    try:
        wamid = request.app[EMULATOR_KEY].inbound(body.phone_number_id, body.sender, body.name, message)
    except GraphError as error:
        raise _graph_error(error) from None
    return web.json_response({"id": wamid})


@routes.post("/_emulator/phone-numbers/{phone_id}")
async def update_phone(request: web.Request) -> web.Response:
    body = await _parse(request, PhoneUpdate)
    emulator = request.app[EMULATOR_KEY]
    phone = emulator.world.phones.get(request.match_info["phone_id"])
    if phone is None:
        raise _bad_request(f"unknown phone number id {request.match_info['phone_id']}")
    old_limit = phone.messaging_limit
    for name, value in body.model_dump(exclude_none=True, exclude={"event"}).items():
        setattr(phone, name, value)
    if body.event or body.messaging_limit or body.throughput_level or body.quality_rating:
        update: dict[str, Any] = {
            "display_phone_number": phone.display_phone_number,
            "event": body.event
            or ("THROUGHPUT_UPGRADE" if body.throughput_level == "HIGH" else "ONBOARDING"),
            "current_limit": phone.messaging_limit,
            "max_daily_conversations_per_business": phone.messaging_limit,
        }
        if old_limit != phone.messaging_limit:
            update["old_limit"] = old_limit
        emulator.emit(phone.waba_id, "phone_number_quality_update", update)
    return web.json_response(emulator.phone_fields(phone, ["id", "quality_rating", "throughput", "status",
                                                           "whatsapp_business_manager_messaging_limit"]))  # fmt: skip


def _template(request: web.Request) -> Template:
    """The template named in the path, or a 400 that names the unknown id."""
    template = request.app[EMULATOR_KEY].world.templates.get(request.match_info["template_id"])
    if template is None:
        raise _bad_request(f"unknown template id {request.match_info['template_id']}")
    return template


@routes.post("/_emulator/templates/{template_id}/review")
async def review(request: web.Request) -> web.Response:
    body = await _parse(request, ReviewRequest)
    emulator = request.app[EMULATOR_KEY]
    template = _template(request)
    emulator.set_template_status(template, body.status, body.reason or "NONE")
    return web.json_response(template.as_graph())


@routes.post("/_emulator/templates/{template_id}/quality")
async def quality(request: web.Request) -> web.Response:
    body = await _parse(request, QualityRequest)
    emulator = request.app[EMULATOR_KEY]
    template = _template(request)
    emulator.set_template_quality(template, body.score)
    return web.json_response({"id": template.id, "quality_score": template.quality_score})


@routes.post("/_emulator/webhooks")
async def emit(request: web.Request) -> web.Response:
    """Send any webhook field as Meta would (e.g. account_update with a partner entry.id)."""
    body = await _parse(request, EmitRequest)
    emulator = request.app[EMULATOR_KEY]
    if body.waba_id not in emulator.world.wabas:
        raise _bad_request(f"unknown WABA id {body.waba_id}")
    phone = emulator.world.phones.get(body.phone_number_id) if body.phone_number_id else None
    url = emulator.emit(body.waba_id, body.field, body.value, phone=phone, entry_id=body.entry_id)
    return web.json_response({"queued": url is not None, "url": url})


@routes.get("/_emulator/webhooks")
async def deliveries(request: web.Request) -> web.Response:
    dispatcher = request.app[EMULATOR_KEY].dispatcher
    return web.json_response({"data": [delivery.as_json() for delivery in dispatcher.deliveries]})


@routes.post("/_emulator/webhooks/{delivery_id:[0-9]+}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    """Meta's at-least-once delivery: the same webhook (same bytes, same signature) once more."""
    delivery_id = int(request.match_info["delivery_id"])
    again = request.app[EMULATOR_KEY].dispatcher.redeliver(delivery_id)
    if again is None:
        raise _bad_request(f"unknown webhook delivery id {delivery_id}")
    return web.json_response({"id": again.id, "url": again.url})


@routes.post("/_emulator/callback")
async def callback(request: web.Request) -> web.Response:
    body = await _parse(request, CallbackRequest)
    emulator = request.app[EMULATOR_KEY]
    verify_token = body.verify_token or emulator.settings.verify_token
    if not await emulator.dispatcher.verify(body.url, verify_token):
        raise _bad_request(f"{body.url} did not answer the verification challenge with verify token given")
    emulator.settings.callback_url = body.url
    emulator.settings.verify_token = verify_token
    if body.fields is not None:
        emulator.settings.callback_fields = body.fields
    return web.json_response({"success": True, "callback_url": body.url})


@routes.post("/_emulator/faults")
async def add_fault(request: web.Request) -> web.Response:
    body = await _parse(request, FaultRequest)
    request.app[FAULTS_KEY].append(Fault(**body.model_dump()))
    return web.json_response({"faults": len(request.app[FAULTS_KEY])})


@routes.get("/_emulator/faults")
async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"data": [
        {"method": f.method, "path": f.path, "remaining": f.count, "hold": f.hold, "held": f.held}
        for f in request.app[FAULTS_KEY]
    ]})  # fmt: skip


@routes.delete("/_emulator/faults")
async def clear_faults(request: web.Request) -> web.Response:
    for fault in request.app[FAULTS_KEY]:
        fault.released.set()
    request.app[FAULTS_KEY].clear()
    return web.json_response({"faults": 0})


@routes.get("/_emulator/messages")
async def messages(request: web.Request) -> web.Response:
    world = request.app[EMULATOR_KEY].world
    return web.json_response({"data": [
        {"id": m.wamid, "phone_number_id": m.phone_id, "to": m.to, "wa_id": m.wa_id, "type": m.type,
         "body": m.body, "timestamp": m.timestamp, "statuses": m.statuses}
        for m in world.messages.values()
    ]})  # fmt: skip


@routes.get("/_emulator/requests")
async def requests(request: web.Request) -> web.Response:
    """Every Graph call received (secrets redacted), oldest first: to count what a client did."""
    return web.json_response({"data": request.app[EMULATOR_KEY].sent_requests})


@routes.get("/_emulator/state")
async def state(request: web.Request) -> web.Response:
    world = request.app[EMULATOR_KEY].world
    return web.json_response({
        "wabas": {w.id: {"name": w.name, "business_id": w.business_id, "subscribed_apps": list(w.subscriptions)}
                  for w in world.wabas.values()},
        "phone_numbers": {p.id: {"waba_id": p.waba_id, "display_phone_number": p.display_phone_number,
                                 "registered": p.registered, "quality_rating": p.quality_rating}
                          for p in world.phones.values()},
        "templates": {t.id: t.as_graph() for t in world.templates.values()},
    })  # fmt: skip
