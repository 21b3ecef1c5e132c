"""Request id, load shedding on the webhook, and never a 500 without a clear JSON body."""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from wabaplane.gateway.logs import request_id

logger = logging.getLogger("wabaplane.gateway")
# Request ids: unique across replicas without a random draw per request.
PROCESS_ID = secrets.token_hex(4)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_ids() -> Middleware:
    counter = itertools.count()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("X-Request-Id", "")
        current = (
            given if 0 < len(given) <= 100 and given.isprintable() else f"{PROCESS_ID}{next(counter):010x}"
        )
        token = request_id.set(current)
        try:
            response = await handler(request)
            response.headers["X-Request-Id"] = current
            return response
        finally:
            request_id.reset(token)

    return middleware


def load_shedding(limit: int, paths: frozenset[str]) -> Middleware:
    """Above `limit` requests in flight, answer 503 at once: Meta retries, a queue would only time out."""
    in_flight = 0

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        if request.method != "POST" or request.path not in paths:
            return await handler(request)
        if in_flight >= limit:
            return web.json_response(
                {"error": {"message": "overloaded; retry shortly", "status": 503}},
                status=503,
                headers={"Retry-After": "1"},
            )
        in_flight += 1
        try:
            return await handler(request)
        finally:
            in_flight -= 1

    return middleware


def errors() -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as http:
            if http.status < 400:
                raise
            return web.json_response({"error": {"message": http.reason, "status": http.status}},
                                     status=http.status, headers={k: v for k, v in http.headers.items()
                                                                  if k.lower() == "allow"})  # fmt: skip
        except Exception:
            logger.exception("unexpected error on %s %s", request.method, request.path)
            return web.json_response(
                {"error": {"message": "the gateway failed unexpectedly; retry", "status": 503}},
                status=503,
                headers={"Retry-After": "5"},
            )

    return middleware
