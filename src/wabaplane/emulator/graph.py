"""The Graph API paths: `/v{N}.0/{id}[/{edge}]` (and unversioned), Meta's auth and error envelope."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from wabaplane.emulator.engine import Emulator
from wabaplane.emulator.state import Token
from wabaplane.meta.envelope import GraphError, not_found


@dataclass
class Fault:
    """The next `count` calls matching method and path fail as configured.

    A held call waits until the faults are cleared, so a test can keep calls in flight at "Meta" for
    exactly as long as it needs instead of guessing a latency.
    """

    method: str
    path: str
    count: int
    code: int | None = None
    http_status: int | None = None
    latency_ms: int = 0
    reset: bool = False
    hold: bool = False
    held: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def matches(self, method: str, path: str) -> bool:
        return self.count > 0 and self.method in {"*", method} and re.search(self.path, path) is not None


EMULATOR_KEY = web.AppKey("emulator", Emulator)
FAULTS_KEY: web.AppKey[list[Fault]] = web.AppKey("faults")
VERSION = re.compile(r"^v\d+\.\d+$")


async def graph_handler(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR_KEY]
    segments = [s for s in request.path.split("/") if s]
    if segments and VERSION.match(segments[0]):
        segments = segments[1:]
    fault = _take_fault(request)
    if fault is not None:
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.hold:
            fault.held += 1
            try:
                await fault.released.wait()
            finally:
                fault.held -= 1
        if fault.reset:
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("fault injected: connection reset")
        if fault.code is not None or fault.http_status is not None:
            error = GraphError(code=fault.code or 2, details="fault injected by the emulator's control API",
                               http_status=fault.http_status)  # fmt: skip
            return _error_response(error, emulator)
    try:
        result = await _dispatch(request, emulator, segments)
    except GraphError as error:
        return _error_response(error, emulator)
    paging = result.get("paging") if isinstance(result, dict) else None
    if isinstance(paging, dict) and str(paging.get("next", "")).startswith("?"):
        base = request.url.with_query(None)
        paging["next"] = str(base) + paging["next"]
    return web.json_response(result)


def _take_fault(request: web.Request) -> Fault | None:
    for fault in request.app[FAULTS_KEY]:
        if fault.matches(request.method, request.path):
            fault.count -= 1
            return fault
    return None


def _error_response(error: GraphError, emulator: Emulator) -> web.Response:
    headers = {"WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_token"'} if error.code == 190 else {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return web.json_response(
        error.envelope(), status=error.status(emulator.settings.http_status_overrides), headers=headers
    )


async def _params(request: web.Request) -> dict[str, Any]:
    """Query, form and JSON parameters merged, as Graph accepts all three."""
    params: dict[str, Any] = dict(request.query)
    if request.method in {"POST", "DELETE"} and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except json.JSONDecodeError:
                raise GraphError(code=100, details="The request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise GraphError(code=100, details="The request body must be a JSON object")
            params.update(body)
        else:
            params.update(await request.post())
    for key, value in list(params.items()):
        # Form-encoded structured parameters arrive as JSON strings.
        if key in {"components", "webhook_configuration"} and isinstance(value, str):
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                raise GraphError(code=100, details=f"{key} must be JSON") from None
    return params


def _token_value(request: web.Request, params: dict[str, Any]) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    value = params.get("access_token")
    return str(value) if value else None


Handler = Callable[[Emulator, Token | None, str, dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


async def _dispatch(request: web.Request, emulator: Emulator, segments: list[str]) -> dict[str, Any]:
    params = await _params(request)
    method = request.method
    emulator.sent_requests.append({"method": method, "path": request.path, "params": _redacted(params)})
    query = {k: str(v) for k, v in params.items() if isinstance(v, str | int)}
    if segments == ["oauth", "access_token"] and method == "GET":
        return emulator.oauth_access_token(query)
    token = emulator.authenticate(_token_value(request, params))
    if segments == ["debug_token"] and method == "GET":
        return emulator.debug_token(token, query.get("input_token"))
    if len(segments) not in {1, 2}:
        raise not_found("/".join(segments), method)
    object_id = segments[0]
    edge = segments[1] if len(segments) == 2 else None
    world = emulator.world

    if object_id in world.wabas:
        if edge is None and method == "GET":
            return emulator.get_waba(token, object_id)
        if edge == "subscribed_apps":
            if method == "GET":
                return emulator.list_subscribed_apps(token, object_id)
            if method == "POST":
                return await emulator.subscribe_app(token, object_id, params)
            if method == "DELETE":
                return emulator.unsubscribe_app(token, object_id)
        if edge == "phone_numbers" and method == "GET":
            return emulator.list_phone_numbers(token, object_id, query)
        if edge == "message_templates":
            if method == "GET":
                return emulator.list_templates(token, object_id, query)
            if method == "POST":
                return emulator.create_template(token, object_id, params)
            if method == "DELETE":
                return emulator.delete_template(token, object_id, query)
    if object_id in world.phones:
        if edge is None and method == "GET":
            return emulator.get_phone(token, object_id, query)
        if edge is None and method == "POST":
            return await emulator.update_phone(token, object_id, params)
        if edge in {"register", "deregister"} and method == "POST":
            return emulator.register(token, object_id, params, register=edge == "register")
        if edge == "messages" and method == "POST":
            return emulator.send(token, object_id, params)
    if object_id in world.templates:
        if edge is None and method == "GET":
            return emulator.get_template(token, object_id, query)
        if edge is None and method == "POST":
            return emulator.edit_template(token, object_id, params)
    raise not_found(object_id, method)


def _redacted(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ("[redacted]" if k in {"access_token", "client_secret", "pin", "code"} else v)
        for k, v in params.items()
    }
