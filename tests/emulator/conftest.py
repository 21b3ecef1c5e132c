"""An in-process emulator on a real loopback port, a webhook receiver, and a client against them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from wabaplane.emulator.app import create_app
from wabaplane.emulator.config import EmulatorSettings, Limits
from wabaplane.emulator.engine import Emulator
from wabaplane.emulator.graph import EMULATOR_KEY
from wabaplane.emulator.seed import Seed
from wabaplane.meta.client import GraphClient

APP_ID = "1234567890123456"
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
ACME_BUSINESS = "500123456789012"
ACME_WABA = "102290129340398"
ACME_SUPPORT = "106540352242922"
ACME_SALES = "106540352242923"
GLOBEX_BUSINESS = "500987654321098"
GLOBEX_WABA = "103344556677889"
GLOBEX_PHONE = "107788990011223"
ACME_TOKEN = "EAAacme-test-token"
GLOBEX_TOKEN = "EAAglobex-test-token"
CUSTOMER = "15551234567"

SEED = {
    "businesses": [
        {
            "id": ACME_BUSINESS,
            "name": "Acme",
            "wabas": [
                {
                    "id": ACME_WABA,
                    "name": "Acme WABA",
                    "subscribed": True,
                    "phone_numbers": [
                        {"id": ACME_SUPPORT, "display_phone_number": "+1 555-010-0001", "verified_name": "Acme Support",
                         "registered": True, "pin": "111111"},
                        {"id": ACME_SALES, "display_phone_number": "+1 555-010-0002", "verified_name": "Acme Sales"},
                    ],
                }
            ],
        },
        {
            "id": GLOBEX_BUSINESS,
            "name": "Globex",
            "wabas": [
                {
                    "id": GLOBEX_WABA,
                    "name": "Globex WABA",
                    "subscribed": True,
                    "phone_numbers": [
                        {"id": GLOBEX_PHONE, "display_phone_number": "+44 20 7946 0958", "verified_name": "Globex",
                         "country_code": "44", "registered": True},
                    ],
                }
            ],
        },
    ],
    "tokens": [
        {"value": ACME_TOKEN, "wabas": [ACME_WABA]},
        {"value": GLOBEX_TOKEN, "wabas": [GLOBEX_WABA]},
    ],
}  # fmt: skip


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    path: str


@dataclass
class Receiver:
    """A webhook endpoint on loopback that records raw bodies and answers Meta's handshake."""

    url: str
    verify_token: str
    posts: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give next, then 200

    def json(self) -> list[dict[str, Any]]:
        import json

        return [json.loads(post.body) for post in self.posts]

    def changes(self, field_name: str | None = None) -> list[dict[str, Any]]:
        return [
            change
            for payload in self.json()
            for entry in payload["entry"]
            for change in entry["changes"]
            if field_name is None or change["field"] == field_name
        ]


async def _start_receiver(path: str, verify_token: str) -> tuple[Receiver, TestServer]:
    receiver_app = web.Application()
    receiver = Receiver(url="", verify_token=verify_token)

    async def handshake(request: web.Request) -> web.Response:
        if request.query.get("hub.verify_token") == receiver.verify_token:
            return web.Response(text=request.query["hub.challenge"])
        return web.Response(status=403, text="wrong verify token")

    async def post(request: web.Request) -> web.Response:
        receiver.posts.append(Received(await request.read(), dict(request.headers), request.path))
        status = receiver.statuses.pop(0) if receiver.statuses else 200
        return web.Response(status=status)

    receiver_app.router.add_get(path, handshake)
    receiver_app.router.add_post(path, post)
    server = TestServer(receiver_app, host="127.0.0.1")
    await server.start_server()
    receiver.url = str(server.make_url(path))
    return receiver, server


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[[str], Any]]:
    servers: list[TestServer] = []

    async def make(path: str = "/webhook", verify_token: str = VERIFY_TOKEN) -> Receiver:
        receiver, server = await _start_receiver(path, verify_token)
        servers.append(server)
        return receiver

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
def settings() -> EmulatorSettings:
    return EmulatorSettings(
        app_id=APP_ID,
        app_secret=APP_SECRET,
        verify_token=VERIFY_TOKEN,
        template_review_seconds=0.05,
        status_delays=(0.01, 0.02, 0.03),
        webhook_retry_schedule=[0.05, 0.1, 0.2],
        webhook_batch_window=0.05,
        limits=Limits(),
        random_seed=7,
    )


@dataclass
class Harness:
    server: TestServer
    emulator: Emulator
    base_url: str

    def client(self, **kwargs: Any) -> GraphClient:
        options: dict[str, Any] = {"app_id": APP_ID, "app_secret": APP_SECRET, "backoff_base": 0.01, **kwargs}
        return GraphClient(self.base_url, "v25.0", **options)

    async def control(self, method: str, path: str, body: Any = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            return await http.request(method, f"/_emulator/{path}", json=body)


@pytest.fixture
async def harness(settings: EmulatorSettings, receivers: Callable[[str], Any]) -> AsyncIterator[Harness]:
    app = create_app(settings, Seed.model_validate(SEED))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Harness(server, app[EMULATOR_KEY], str(server.make_url("")).rstrip("/"))
    finally:
        await server.close()
