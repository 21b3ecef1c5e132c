"""The tenants' send API against the emulator: SDK compatibility, policy order, limits, isolation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer
from pywa.client import WhatsApp
from pywa.handlers import MessageStatusHandler
from pywa.types.message_status import MessageStatus
from pywa.types.templates import TemplateLanguage

from tests.emulator.conftest import (
    ACME_SUPPORT,
    ACME_TOKEN,
    ACME_WABA,
    GLOBEX_PHONE,
    GLOBEX_TOKEN,
    GLOBEX_WABA,
    SEED,
)
from tests.gateway.conftest import (
    APP_SECRET,
    VERIFY_TOKEN,
    Gateway,
    Receiver,
    eventually,
    make_view,
    number_obj,
    secret_obj,
    tenant_obj,
    tenant_secrets,
    webhook_secret_for,
)
from tests.store.test_store import FakeClock
from wabaplane.emulator.app import create_app as create_emulator
from wabaplane.emulator.config import EmulatorSettings
from wabaplane.emulator.engine import Emulator
from wabaplane.emulator.graph import EMULATOR_KEY
from wabaplane.emulator.seed import Seed

GatewayFactory = Callable[..., Awaitable[Gateway]]
Receivers = Callable[[], Awaitable[Receiver]]
ACME_KEY, GLOBEX_KEY = "wpk_acme-send-key", "wpk_globex-send-key"
CUSTOMER = "15551230000"
ORDER_TEMPLATE = {"name": "order_update", "language": "en_US", "category": "UTILITY",
                  "components": [{"type": "BODY", "text": "Order {{1}} ships on {{2}}.",
                                  "example": {"body_text": [["A-1", "Monday"]]}}]}  # fmt: skip


@dataclass
class Stack:
    gateway: Gateway
    emulator: Emulator
    emulator_url: str
    clock: FakeClock
    acme: Receiver
    globex: Receiver

    def auth(self, key: str = ACME_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def send(self, body: dict[str, Any], key: str = ACME_KEY, phone: str = ACME_SUPPORT,
                   headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
        return await self.gateway.client.post(f"/v25.0/{phone}/messages", json={"messaging_product": "whatsapp", **body},
                                              headers={**self.auth(key), **(headers or {})})  # fmt: skip

    async def customer_writes(self, phone: str = ACME_SUPPORT, customer: str = CUSTOMER) -> None:
        self.emulator.inbound(phone, customer, "Customer", {"type": "text", "text": {"body": "hi"}})

        async def window_open() -> bool:
            from wabaplane.store import conversation_id

            namespace, tenant = ("team-a", "acme") if phone == ACME_SUPPORT else ("team-b", "globex")
            return (
                await self.gateway.store.last_inbound(conversation_id(namespace, tenant, phone, customer))
                is not None
            )

        await eventually(window_open, what="the inbound message to open the window")


def template_obj(namespace: str, tenant: str, template: dict[str, Any], status: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": template["name"]},
            "spec": {"tenantRef": {"name": tenant}, **template}, "status": {"templateStatus": status}}  # fmt: skip


async def approve_in_emulator(emulator_url: str, waba: str, token: str, template: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=emulator_url) as client:
        created = await client.post(f"/v25.0/{waba}/message_templates", json=template,
                                    headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        created.raise_for_status()
        reviewed = await client.post(
            f"/_emulator/templates/{created.json()['id']}/review", json={"status": "APPROVED"}
        )
        reviewed.raise_for_status()


@pytest.fixture
async def stack(gateway_factory: GatewayFactory, receivers: Receivers) -> AsyncIterator[Stack]:
    settings = EmulatorSettings(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, webhook_batch_window=0.0,
                                status_delays=(0.01, 0.02, 0.03), template_review_seconds=3600)  # fmt: skip
    app = create_emulator(settings, Seed.model_validate(SEED))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    emulator_url = str(server.make_url("")).rstrip("/")
    acme, globex = await receivers(), await receivers()
    view = make_view(
        [tenant_obj("team-a", "acme", ACME_WABA, acme.url, fields=["messages"], quotas={"messagesPerSecond": 1000, "burst": 1000}),
         tenant_obj("team-b", "globex", GLOBEX_WABA, globex.url, quotas={"messagesPerSecond": 1000, "burst": 1000})],
        [number_obj("team-a", "support", "acme", ACME_SUPPORT, "15550100001"),
         number_obj("team-b", "main", "globex", GLOBEX_PHONE, "442079460958")],
        [*tenant_secrets("team-a", "acme", ACME_KEY, webhook_secret_for("acme")),
         *tenant_secrets("team-b", "globex", GLOBEX_KEY, webhook_secret_for("globex")),
         secret_obj("team-a", "acme-meta-token", {"token": ACME_TOKEN}),
         secret_obj("team-b", "globex-meta-token", {"token": GLOBEX_TOKEN})],
    )  # fmt: skip
    view.load("messagetemplates", [template_obj("team-a", "acme", ORDER_TEMPLATE, "APPROVED"),
                                   template_obj("team-a", "acme", {**ORDER_TEMPLATE, "name": "promo"}, "PENDING")])  # fmt: skip
    await approve_in_emulator(emulator_url, ACME_WABA, ACME_TOKEN, ORDER_TEMPLATE)
    clock = FakeClock(time.time())
    gateway = await gateway_factory(view, clock=clock, graph_url=emulator_url)
    app[EMULATOR_KEY].settings.callback_url = str(gateway.server.make_url("/webhook"))
    try:
        yield Stack(gateway, app[EMULATOR_KEY], emulator_url, clock, acme, globex)
    finally:
        await server.close()


def template_send(name: str = "order_update", parameters: int = 2, to: str = CUSTOMER) -> dict[str, Any]:
    return {"to": to, "type": "template", "template": {
        "name": name, "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": f"p{i}"} for i in range(parameters)]}]}}  # fmt: skip


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


class ToGateway(httpx.HTTPTransport):
    """pywa hard-codes Meta's host; this transport sends its requests to the gateway instead."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.target = httpx.URL(base_url)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=self.target.scheme, host=self.target.host, port=self.target.port
        )
        request.headers["Host"] = f"{self.target.host}:{self.target.port}"
        return super().handle_request(request)


async def test_a_third_party_sdk_sends_through_the_gateway_and_gets_statuses_back(stack: Stack) -> None:
    await stack.customer_writes()
    session = httpx.Client(transport=ToGateway(str(stack.gateway.server.make_url(""))))
    try:
        wa = WhatsApp(phone_id=ACME_SUPPORT, token=ACME_KEY, session=session, app_secret=webhook_secret_for("acme"),
                      verify_token=VERIFY_TOKEN, validate_updates=True)  # fmt: skip
        statuses: list[MessageStatus[Any]] = []
        wa.add_handlers(MessageStatusHandler(lambda _, status: statuses.append(status)))
        text = await asyncio.to_thread(wa.send_message, to=CUSTOMER, text="Your order shipped")
        body = {
            "type": "body",
            "parameters": [{"type": "text", "text": "A-7"}, {"type": "text", "text": "Friday"}],
        }
        template = await asyncio.to_thread(wa.send_template, to=CUSTOMER, name="order_update",
                                           language=TemplateLanguage.ENGLISH_US, params=[body])  # fmt: skip
    finally:
        session.close()
    assert text.id in stack.emulator.world.messages
    assert stack.emulator.world.messages[template.id].body["template"]["name"] == "order_update"

    def status_posts() -> list[Any]:
        return [
            hit for hit in stack.acme.hits if hit.payload["entry"][0]["changes"][0]["value"].get("statuses")
        ]

    await eventually(lambda: len(status_posts()) >= 6, what="sent, delivered and read for both sends")
    for hit in status_posts():
        assert wa.webhook_update_validator(hit.body, hit.headers["X-Hub-Signature-256"]) is None
        wa.webhook_update_handler(hit.body)
    assert {s.id for s in statuses} >= {text.id}
    assert {str(s.status.value).lower() for s in statuses if s.id == text.id} == {"sent", "delivered", "read"}
    logged = (await stack.gateway.client.get(f"/v1/messages/{text.id}", headers=stack.auth())).json()
    assert (logged["direction"], logged["status"], logged["category"]) == ("outbound", "read", "service")
    assert stack.acme.hits[-1].headers["X-Wabaplane-Conversation-Id"] == logged["conversationId"]
