"""An in-process gateway on a real loopback port, with a static routing table and tenant receivers."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from wabaplane.emulator.webhooks import serialise, sign
from wabaplane.gateway.app import create_app
from wabaplane.gateway.cluster import ClusterView
from wabaplane.gateway.keys import STORE
from wabaplane.gateway.settings import GatewaySettings
from wabaplane.store import Store

APP_SECRET = "gateway-test-app-secret"
VERIFY_TOKEN = "gateway-test-verify-token"
CREATED = "2026-01-01T00:00:00Z"


def tenant_obj(namespace: str, name: str, waba: str, url: str | None, *, fields: list[str] | None = None,
               proven: bool = True, suspended: bool = False, created: str = CREATED,
               max_in_flight: int = 10, quotas: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"displayName": name, "wabaId": waba, "suspended": suspended,
                            "quotas": {"maxInFlightDeliveries": max_in_flight, **(quotas or {})}}  # fmt: skip
    if url:
        spec["webhook"] = {"url": url, "fields": fields or ["messages"]}
    return {
        "metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
        "spec": spec,
        "status": {
            "conditions": [{"type": "CredentialsValid", "status": "True" if proven else "False"}],
            "apiKeySecretName": f"{name}-api-key",
            "webhookSecretName": f"{name}-webhook-secret",
            "tokenSecretName": f"{name}-meta-token",
        },
    }


def number_obj(namespace: str, name: str, tenant: str, phone_id: str, display: str, *, ready: bool = True,
               conflict: bool = False, created: str = CREATED) -> dict[str, Any]:  # fmt: skip
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if conflict:
        conditions.append({"type": "Conflict", "status": "True"})
    return {
        "metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
        "spec": {"tenantRef": {"name": tenant}, "phoneNumberId": phone_id},
        "status": {"displayPhoneNumber": display, "conditions": conditions},
    }


def secret_obj(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"metadata": {"namespace": namespace, "name": name}, "data": encoded}


def tenant_secrets(namespace: str, tenant: str, api_key: str, webhook_secret: str) -> list[dict[str, Any]]:
    return [
        secret_obj(namespace, f"{tenant}-api-key", {"api-key": api_key}),
        secret_obj(namespace, f"{tenant}-webhook-secret", {"secret": webhook_secret}),
    ]


def make_view(tenants: list[dict[str, Any]], numbers: list[dict[str, Any]],
              secrets: list[dict[str, Any]]) -> ClusterView:  # fmt: skip
    view = ClusterView()
    view.load("secrets", secrets)
    view.load("messagetemplates", [])
    view.load("phonenumbers", numbers)
    view.load("tenants", tenants)
    return view


def webhook_secret_for(name: str) -> str:
    return "whsec_" + base64.b64encode(name.encode().ljust(24, b"0")[:24]).decode()


def signed(payload: dict[str, Any], secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    body = serialise(payload)
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)}


def text_message(phone_id: str, waba: str, message_id: str, customer: str = "15551234567",
                 body: str = "hello") -> dict[str, Any]:  # fmt: skip
    return {
        "id": waba,
        "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100001", "phone_number_id": phone_id},
            "contacts": [{"profile": {"name": "Customer"}, "wa_id": customer}],
            "messages": [{"from": customer, "id": message_id, "timestamp": "1800000000", "type": "text",
                          "text": {"body": body}}],
        }}],
    }  # fmt: skip


def envelope(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": list(entries)}


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def message_ids(self) -> list[str]:
        ids = []
        for entry in self.payload["entry"]:
            for change in entry["changes"]:
                ids += [m["id"] for m in change["value"].get("messages", [])]
                ids += [f"{s['id']}:{s['status']}" for s in change["value"].get("statuses", [])]
        return ids


@dataclass
class Receiver:
    """A tenant's webhook endpoint on loopback: records every POST; `respond` decides the answer."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    respond: Callable[[Hit], Awaitable[web.Response]] | None = None

    def unique(self) -> dict[str, Hit]:
        """Deliveries deduplicated on webhook-id, as a careful receiver does."""
        return {hit.headers["webhook-id"]: hit for hit in self.hits}

    def ids(self) -> list[str]:
        return [i for hit in self.unique().values() for i in hit.message_ids]


async def _start_receiver(receiver: Receiver) -> TestServer:
    async def handle(request: web.Request) -> web.Response:
        hit = Hit(dict(request.headers), await request.read())
        receiver.hits.append(hit)
        if receiver.respond is not None:
            return await receiver.respond(hit)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    receiver.url = str(server.make_url("/hooks"))
    return server


Receivers = Callable[[], Awaitable[Receiver]]


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    servers: list[TestServer] = []

    async def make() -> Receiver:
        receiver = Receiver()
        servers.append(await _start_receiver(receiver))
        return receiver

    yield make
    for server in servers:
        await server.close()


def gateway_settings(tmp_path: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        # A fresh file per gateway: hypothesis runs many examples in one test's tmp_path.
        "store_url": f"sqlite:///{tmp_path / f'gateway-{uuid.uuid4().hex[:8]}.db'}",
        "app_secrets": [SecretStr(APP_SECRET)],
        "verify_token": SecretStr(VERIFY_TOKEN),
        "watch_cluster": False,
        "allowed_cidrs": ("127.0.0.0/8",),
        "allow_http": True,
        "retry_schedule": (0.05, 0.05, 0.05),
        "retry_jitter": 0.0,
        "poll_interval": 0.05,
        "stats_interval": 0.1,
        "breaker_failures": 1000,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@dataclass
class Gateway:
    server: TestServer
    client: httpx.AsyncClient
    app: web.Application
    view: ClusterView

    @property
    def store(self) -> Store:
        return self.app[STORE]

    async def post_webhook(self, payload: dict[str, Any], secret: str = APP_SECRET) -> httpx.Response:
        body, headers = signed(payload, secret)
        return await self.client.post("/webhook", content=body, headers=headers)


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def gateway_factory(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    started: list[Gateway] = []

    async def start(view: ClusterView, clock: Callable[[], float] = time.time, **overrides: Any) -> Gateway:
        app = create_app(gateway_settings(tmp_path, **overrides), view=view, clock=clock)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        client = httpx.AsyncClient(base_url=str(server.make_url("")), timeout=10)
        gateway = Gateway(server, client, app, view)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        await gateway.client.aclose()
        await gateway.server.close()
