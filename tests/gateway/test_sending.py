"""The tenants' send API against the emulator: SDK compatibility, policy order, limits, isolation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pywa.client import WhatsApp
from pywa.handlers import MessageStatusHandler
from pywa.types.message_status import MessageStatus
from pywa.types.templates import TemplateLanguage

from tests.conftest import RedirectTransport, eventually
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
    GatewayFactory,
    Receiver,
    Receivers,
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
from wabaplane.gateway.sending import MAX_SENDS_IN_FLIGHT_PER_TENANT

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
        # The gateway's clock is the test's; Meta's timestamps are real: keep the two in step.
        self.clock.now = max(self.clock.now, time.time() + 1)


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


@dataclass
class World:
    """The emulator (as Meta, ORDER_TEMPLATE approved), acme's and globex's endpoints, the routing table."""

    emulator_app: Any
    emulator_server: TestServer
    view: Any
    acme: Receiver
    globex: Receiver

    @property
    def emulator_url(self) -> str:
        return str(self.emulator_server.make_url("")).rstrip("/")


async def world(receivers: Receivers, acme_quotas: dict[str, int] | None = None) -> World:
    settings = EmulatorSettings(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, webhook_batch_window=0.0,
                                status_delays=(0.01, 0.02, 0.03), template_review_seconds=3600)  # fmt: skip
    app = create_emulator(settings, Seed.model_validate(SEED))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    emulator_url = str(server.make_url("")).rstrip("/")
    acme, globex = await receivers(), await receivers()
    quotas = acme_quotas or {"messagesPerSecond": 1000, "burst": 1000}
    view = make_view(
        [tenant_obj("team-a", "acme", ACME_WABA, acme.url, fields=["messages"], quotas=quotas),
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
    return World(app, server, view, acme, globex)


@pytest.fixture
async def stack(gateway_factory: GatewayFactory, receivers: Receivers) -> AsyncIterator[Stack]:
    made = await world(receivers)
    clock = FakeClock(time.time())
    gateway = await gateway_factory(made.view, clock=clock, graph_url=made.emulator_url)
    made.emulator_app[EMULATOR_KEY].settings.callback_url = str(gateway.server.make_url("/webhook"))
    try:
        yield Stack(
            gateway, made.emulator_app[EMULATOR_KEY], made.emulator_url, clock, made.acme, made.globex
        )
    finally:
        await made.emulator_server.close()


def template_send(name: str = "order_update", parameters: int = 2, to: str = CUSTOMER) -> dict[str, Any]:
    return {"to": to, "type": "template", "template": {
        "name": name, "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": f"p{i}"} for i in range(parameters)]}]}}  # fmt: skip


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


async def test_a_third_party_sdk_sends_through_the_gateway_and_gets_statuses_back(stack: Stack) -> None:
    await stack.customer_writes()
    session = httpx.Client(transport=RedirectTransport(str(stack.gateway.server.make_url(""))))
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
        await asyncio.to_thread(session.close)
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
    fetched = await stack.gateway.client.get(f"/v1/messages/{text.id}", headers=stack.auth())
    logged = fetched.json()
    assert fetched.status_code == 200, logged
    assert (logged["direction"], logged["status"], logged["category"]) == ("outbound", "read", "service")
    assert stack.acme.hits[-1].headers["X-Wabaplane-Conversation-Id"] == logged["conversationId"]


async def test_free_text_outside_the_window_is_refused_before_meta_sees_it(stack: Stack) -> None:
    before = len(stack.emulator.world.messages)
    refused = await stack.send({"to": CUSTOMER, "type": "text", "text": {"body": "hello?"}})
    assert refused.status_code == 400
    error = error_of(refused)
    assert error["code"] == 131047
    assert "wabaplane gateway refused the send" in error["message"]
    assert "only an approved template may be sent" in error["error_data"]["details"]
    assert len(stack.emulator.world.messages) == before
    assert (await stack.send(template_send())).status_code == 200, "a template is allowed outside the window"
    await stack.customer_writes()
    assert (await stack.send({"to": CUSTOMER, "type": "text", "text": {"body": "now ok"}})).status_code == 200
    stack.clock.now += 24 * 3600 + 1
    assert (
        error_of(await stack.send({"to": CUSTOMER, "type": "text", "text": {"body": "late"}}))["code"]
        == 131047
    )


@pytest.mark.parametrize(
    ("body", "code", "details"),
    [
        (template_send("nope"), 132001, "template nope in en_US does not exist for this tenant"),
        (template_send("promo"), 132001, "template promo in en_US is PENDING, not APPROVED"),
        (template_send(parameters=1), 132000, "template order_update expects 2 body parameters, got 1"),
    ],
)
async def test_templates_must_exist_be_approved_and_get_their_parameters(
    stack: Stack, body: dict[str, Any], code: int, details: str
) -> None:
    before = len(stack.emulator.world.messages)
    refused = await stack.send(body)
    assert error_of(refused)["code"] == code
    assert details in error_of(refused)["error_data"]["details"]
    assert len(stack.emulator.world.messages) == before


async def test_another_tenants_number_answers_like_a_number_that_does_not_exist(stack: Stack) -> None:
    theirs = await stack.send(template_send(), phone=GLOBEX_PHONE)
    nobody = await stack.send(template_send(), phone="109999999999999")
    assert theirs.status_code == nobody.status_code == 400
    # Identical but for the id itself (and Meta's per-request trace id).
    same = {k: v for k, v in error_of(nobody).items() if k != "fbtrace_id"}
    theirs_as_unknown = json.loads(json.dumps({k: v for k, v in error_of(theirs).items() if k != "fbtrace_id"})
                                   .replace(GLOBEX_PHONE, "109999999999999"))  # fmt: skip
    assert theirs_as_unknown == same
    assert error_of(theirs)["code"] == 100
    assert error_of(theirs)["error_subcode"] == 33
    unknown_key = await stack.send(template_send(), key="wpk_nobody")
    assert (unknown_key.status_code, error_of(unknown_key)["code"]) == (401, 190)


async def test_a_tenant_sees_only_its_own_messages_conversations_and_usage(stack: Stack) -> None:
    await stack.customer_writes(GLOBEX_PHONE, "447700900123")
    sent = await stack.send({"to": "447700900123", "type": "text", "text": {"body": "hi"}}, key=GLOBEX_KEY,
                            phone=GLOBEX_PHONE)  # fmt: skip
    message_id = sent.json()["messages"][0]["id"]
    client = stack.gateway.client
    assert (await client.get(f"/v1/messages/{message_id}", headers=stack.auth(GLOBEX_KEY))).status_code == 200
    assert (await client.get(f"/v1/messages/{message_id}", headers=stack.auth())).status_code == 404
    conversations = (await client.get("/v1/conversations", headers=stack.auth(GLOBEX_KEY))).json()["data"]
    [conversation] = conversations
    assert conversation["window"]["open"] is True
    assert (
        await client.get(f"/v1/conversations/{conversation['id']}/messages", headers=stack.auth())
    ).status_code == 404
    thread = (
        await client.get(f"/v1/conversations/{conversation['id']}/messages", headers=stack.auth(GLOBEX_KEY))
    ).json()
    assert [m["direction"] for m in thread["data"]] == ["inbound", "outbound"]
    assert (await client.get("/v1/conversations", headers=stack.auth())).json()["data"] == []
    month = time.strftime("%Y-%m", time.gmtime(stack.clock.now))
    mine = (await client.get(f"/v1/usage?month={month}", headers=stack.auth())).json()
    assert (mine["messages"], mine["inbound"], mine["conversations"]) == ({}, 0, 0)
    theirs = (await client.get(f"/v1/usage?month={month}", headers=stack.auth(GLOBEX_KEY))).json()
    assert theirs["inbound"] == 1
    assert sum(theirs["messages"]["service"].values()) == 1
    assert (await client.get("/v1/usage?month=2026-13", headers=stack.auth())).status_code == 400


async def test_an_idempotency_key_returns_the_first_result_and_never_sends_twice(stack: Stack) -> None:
    key = {"Idempotency-Key": "order-A-1-shipped"}
    first = await stack.send(template_send(), headers=key)
    again = await stack.send(template_send(), headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    sent_ids = [
        m
        for m in stack.emulator.world.messages.values()
        if m.body.get("template", {}).get("name") == "order_update"
    ]
    assert len(sent_ids) == 1
    different = await stack.send(template_send(to="15551239999"), headers=key)
    assert different.status_code == 422
    # A refused request is not remembered: fixing it and retrying with the same key sends it.
    fixed_key = {"Idempotency-Key": "retry-after-fix"}
    assert (await stack.send(template_send(parameters=1), headers=fixed_key)).status_code == 400
    assert (await stack.send(template_send(parameters=1), headers=fixed_key)).status_code == 400


async def test_the_tenant_quota_refuses_with_its_own_code_and_recovers_with_time(
    stack: Stack, gateway_factory: GatewayFactory
) -> None:
    view = stack.gateway.view
    view.load("tenants", [tenant_obj("team-a", "acme", ACME_WABA, stack.acme.url,
                                     quotas={"messagesPerSecond": 2, "burst": 3})])  # fmt: skip
    results = [await stack.send(template_send(to=f"1555000{i:04d}")) for i in range(4)]
    assert [r.status_code for r in results] == [200, 200, 200, 429]
    assert error_of(results[3])["code"] == 4290001
    assert (
        "the tenant's quota of 2 messages per second (burst 3) is used up" in error_of(results[3])["message"]
    )
    assert results[3].headers["Retry-After"] == "1"
    stack.clock.now += 0.5
    assert passed_gateway(await stack.send(template_send(to="15550009999")))
    usage = (await stack.gateway.client.get("/v1/usage", headers=stack.auth())).json()
    assert usage["refusals"] == {"tenant_quota": 1}


def passed_gateway(response: httpx.Response) -> bool:
    """The gateway forwarded it (Meta answered), whatever Meta said.

    The gateway's clock is moved by the test; the emulator's limits run on real time, so after a
    jump of the gateway's clock only the gateway's decision is asserted.
    """
    return bool(response.headers.get("X-Wabaplane-Source") == "meta")


async def test_meta_limits_refuse_exactly_at_the_limit(stack: Stack) -> None:
    # Pair rate: a burst of 45 to one customer, then one every 6 s.
    pair = [await stack.send(template_send()) for _ in range(46)]
    assert [r.status_code for r in pair].count(200) == 45
    assert error_of(pair[-1])["code"] == 131056
    assert not passed_gateway(pair[-1])
    stack.clock.now += 6.0
    assert error_of(await stack.send(template_send()))["code"] == 131056, (
        "Meta's 6 s plus the gateway's margin"
    )
    stack.clock.now += 0.4
    assert passed_gateway(await stack.send(template_send()))
    # Throughput: 80 messages per second per number, to different customers.
    stack.clock.now += 1.3
    burst = [await stack.send(template_send(to=f"1444{i:07d}")) for i in range(81)]
    assert [passed_gateway(r) for r in burst].count(True) == 80
    assert error_of(burst[-1])["code"] == 130429
    assert burst[-1].headers["Retry-After"] == "1"
    stack.clock.now += 1.0
    assert error_of(await stack.send(template_send(to="14440009998")))["code"] == 130429, (
        "1 s plus the margin"
    )
    stack.clock.now += 0.2
    assert passed_gateway(await stack.send(template_send(to="14440009999")))


async def test_the_messaging_limit_counts_customers_reached_outside_the_window(stack: Stack) -> None:
    view = stack.gateway.view
    number = number_obj("team-a", "support", "acme", ACME_SUPPORT, "15550100001")
    number["status"]["messagingLimit"] = "TIER_50"
    view.load("phonenumbers", [number, number_obj("team-b", "main", "globex", GLOBEX_PHONE, "442079460958")])
    results = [await stack.send(template_send(to=f"1333{i:07d}")) for i in range(51)]
    assert [r.status_code for r in results].count(200) == 50
    assert error_of(results[-1])["code"] == 4290003
    assert (await stack.send(template_send(to="13330000000"))).status_code == 200, (
        "a customer already reached"
    )


async def test_twenty_tenants_bursting_at_once_never_get_meta_rate_errors(
    gateway_factory: GatewayFactory,
) -> None:
    """Real time throughout: the gateway's limits, then the emulator's, both on the wall clock."""
    count = 20
    gateway, server = await _world(count, gateway_factory)
    try:
        client = httpx.AsyncClient(base_url=str(gateway.server.make_url("")), timeout=httpx.Timeout(30, pool=None),
                                   limits=httpx.Limits(max_connections=64))  # fmt: skip

        async def burst(i: int) -> list[httpx.Response]:
            phone, auth = str(302000000000000 + i), {"Authorization": f"Bearer wpk_prop_{i}"}
            bodies = [template_send(to="15559990000") for _ in range(50)]
            return list(await asyncio.gather(*(
                client.post(f"/v25.0/{phone}/messages", json={"messaging_product": "whatsapp", **body}, headers=auth)
                for body in bodies)))  # fmt: skip

        try:
            results = [r for batch in await asyncio.gather(*(burst(i) for i in range(count))) for r in batch]
        finally:
            await client.aclose()
        from_meta = [r for r in results if r.headers.get("X-Wabaplane-Source") == "meta"]
        meta_codes = {error_of(r)["code"] for r in from_meta if r.status_code != 200}
        assert not meta_codes & {130429, 131056}, meta_codes
        refused = [error_of(r)["code"] for r in results if r.headers.get("X-Wabaplane-Source") != "meta"]
        assert set(refused) <= {130429, 131056}
        assert 131056 in refused, "the bursts reached the pair rate, and the gateway refused the excess"
        assert len(from_meta) >= count * 45
    finally:
        await server.close()


async def _world(count: int, gateway_factory: GatewayFactory) -> tuple[Gateway, TestServer]:
    """`count` tenants, each with its WABA, number, token, API key and an approved template."""
    businesses, tokens, tenants, numbers, secrets = [], [], [], [], []
    for i in range(count):
        waba, phone, token = str(202000000000000 + i), str(302000000000000 + i), f"EAAprop-{i}"
        businesses.append({"id": str(502000000000000 + i), "name": f"P{i}", "wabas": [{
            "id": waba, "name": f"P{i}", "subscribed": True,
            "phone_numbers": [{"id": phone, "display_phone_number": f"+1 555-030-{i:04d}", "verified_name": f"P{i}",
                               "registered": True}]}]})  # fmt: skip
        tokens.append({"value": token, "wabas": [waba]})
        tenants.append(
            tenant_obj(f"ns-{i}", f"t{i}", waba, None, quotas={"messagesPerSecond": 1000, "burst": 1000})
        )
        numbers.append(number_obj(f"ns-{i}", "n", f"t{i}", phone, f"1555030{i:04d}"))
        secrets += [*tenant_secrets(f"ns-{i}", f"t{i}", f"wpk_prop_{i}", webhook_secret_for(f"t{i}")),
                    secret_obj(f"ns-{i}", f"t{i}-meta-token", {"token": token})]  # fmt: skip
    settings = EmulatorSettings(
        app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, template_review_seconds=3600
    )
    app = create_emulator(settings, Seed.model_validate({"businesses": businesses, "tokens": tokens}))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    emulator_url = str(server.make_url("")).rstrip("/")
    view = make_view(tenants, numbers, secrets)
    view.load(
        "messagetemplates",
        [template_obj(f"ns-{i}", f"t{i}", ORDER_TEMPLATE, "APPROVED") for i in range(count)],
    )
    for i in range(count):
        await approve_in_emulator(emulator_url, str(202000000000000 + i), f"EAAprop-{i}", ORDER_TEMPLATE)
    return await gateway_factory(view, graph_url=emulator_url), server


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(2, 4),
    sends=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=8),
)
async def test_isolation_property_a_key_acts_only_on_its_own_numbers_and_messages(
    gateway_factory: GatewayFactory, count: int, sends: list[tuple[int, int]]
) -> None:
    gateway, server = await _world(count, gateway_factory)
    try:
        sent: dict[int, list[str]] = {i: [] for i in range(count)}
        for caller, owner in ((c % count, o % count) for c, o in sends):
            response = await gateway.client.post(
                f"/v25.0/{302000000000000 + owner}/messages", json={"messaging_product": "whatsapp", **template_send()},
                headers={"Authorization": f"Bearer wpk_prop_{caller}"})  # fmt: skip
            if caller == owner:
                assert response.status_code == 200, response.text
                sent[caller].append(response.json()["messages"][0]["id"])
            else:
                assert response.status_code == 400
                assert (error_of(response)["code"], error_of(response)["error_subcode"]) == (100, 33)
        for reader in range(count):
            auth = {"Authorization": f"Bearer wpk_prop_{reader}"}
            for owner, ids in sent.items():
                for message_id in ids:
                    found = await gateway.client.get(f"/v1/messages/{message_id}", headers=auth)
                    assert found.status_code == (200 if owner == reader else 404)
            usage = (await gateway.client.get("/v1/usage", headers=auth)).json()
            assert sum(sum(by_status.values()) for by_status in usage["messages"].values()) == len(
                sent[reader]
            )
    finally:
        await server.close()


async def test_one_tenants_burst_does_not_delay_another_tenants_send(stack: Stack) -> None:
    await stack.customer_writes(GLOBEX_PHONE, "447700900555")
    control = httpx.AsyncClient(base_url=stack.emulator_url)
    # Meta holds every one of acme's sends until the faults are cleared: acme's slots stay full and the
    # rest of its burst queued for exactly as long as globex's send takes, however slow the machine.
    burst_size = 80  # the number's throughput at Meta: none of it is refused, more than its slots
    hold = {"method": "POST", "path": f"{ACME_SUPPORT}/messages", "count": burst_size, "hold": True}
    assert (await control.post("/_emulator/faults", json=hold)).status_code == 200
    client = httpx.AsyncClient(base_url=str(stack.gateway.server.make_url("")), timeout=httpx.Timeout(60, pool=None),
                               limits=httpx.Limits(max_connections=300))  # fmt: skip

    async def acme_send(i: int) -> httpx.Response:
        return await client.post(f"/v25.0/{ACME_SUPPORT}/messages", headers=stack.auth(),
                                 json={"messaging_product": "whatsapp", **template_send(to=f"1555{i:07d}")})  # fmt: skip

    async def acme_slots_all_held() -> bool:
        held = (await control.get("/_emulator/faults")).json()["data"][0]["held"]
        return bool(held == MAX_SENDS_IN_FLIGHT_PER_TENANT)

    try:
        burst = [asyncio.create_task(acme_send(i)) for i in range(burst_size)]
        await eventually(acme_slots_all_held, what="every one of acme's send slots held at Meta")
        globex = await asyncio.wait_for(
            stack.send({"to": "447700900555", "type": "text", "text": {"body": "quick"}}, key=GLOBEX_KEY,
                       phone=GLOBEX_PHONE),
            timeout=30,
        )  # fmt: skip
        assert globex.status_code == 200, globex.text
        assert not any(task.done() for task in burst), "acme's sends must still be held or queued"
        await control.delete("/_emulator/faults")
        assert [r.status_code for r in await asyncio.gather(*burst)] == [200] * burst_size
    finally:
        await control.delete("/_emulator/faults")
        await control.aclose()
        await client.aclose()


async def test_replies_link_to_the_message_they_answer_and_mark_as_read_passes_through(stack: Stack) -> None:
    await stack.customer_writes()
    [inbound] = [
        m for m in stack.emulator.world.inbound if stack.emulator.world.inbound[m]["from"] == CUSTOMER
    ]
    read = await stack.send({"status": "read", "message_id": inbound})
    assert (read.status_code, read.json()) == (200, {"success": True})
    reply = await stack.send({"to": CUSTOMER, "type": "text", "text": {"body": "On it!"},
                              "context": {"message_id": inbound}})  # fmt: skip
    reply_id = reply.json()["messages"][0]["id"]
    logged = (await stack.gateway.client.get(f"/v1/messages/{reply_id}", headers=stack.auth())).json()
    assert logged["replyTo"] == inbound
    thread = (await stack.gateway.client.get(f"/v1/conversations/{logged['conversationId']}/messages",
                                             headers=stack.auth())).json()["data"]  # fmt: skip
    assert [(m["id"], m["direction"]) for m in thread] == [(inbound, "inbound"), (reply_id, "outbound")]


async def test_two_replicas_on_one_store_and_one_redis_admit_one_quota_and_one_send_per_key(
    gateway_factory: GatewayFactory, receivers: Receivers, postgres: Any, redis_server: Any
) -> None:
    """Two gateway replicas over HTTP, as the chart runs them: PostgreSQL for the store, Redis for limits."""
    made = await world(receivers, acme_quotas={"messagesPerSecond": 1, "burst": 10})
    clock = FakeClock(time.time())
    shared = {"store_url": postgres.create_database(f"t_{time.time_ns()}"), "redis_url": redis_server.url,
              "replicas": 2, "graph_url": made.emulator_url}  # fmt: skip
    replicas = [await gateway_factory(made.view, clock=clock, **shared) for _ in range(2)]
    try:
        # All of the first 15 to one replica, the next 15 to the other: with the limit shared the
        # first takes the whole burst of 10 and the second none (each alone would admit its half, 5).
        answers = [
            await replicas[i // 15].client.post(f"/v25.0/{ACME_SUPPORT}/messages", headers={"Authorization": f"Bearer {ACME_KEY}"},
                                                json={"messaging_product": "whatsapp", **template_send(to=f"1555300{i:04d}")})
            for i in range(30)
        ]  # fmt: skip
        admitted = [a.status_code == 200 for a in answers]
        assert (admitted[:15].count(True), admitted[15:].count(True)) == (10, 0)
        assert {error_of(a)["code"] for a in answers if a.status_code != 200} == {4290001}
        # An Idempotency-Key given to one replica is honoured by the other: one message at Meta.
        clock.now += 60
        key = {"Authorization": f"Bearer {ACME_KEY}", "Idempotency-Key": "order-77-shipped"}
        body = {"messaging_product": "whatsapp", **template_send(to="15553999999")}
        first = await replicas[0].client.post(f"/v25.0/{ACME_SUPPORT}/messages", headers=key, json=body)
        again = await replicas[1].client.post(f"/v25.0/{ACME_SUPPORT}/messages", headers=key, json=body)
        assert first.status_code == again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        sent = [m for m in made.emulator_app[EMULATOR_KEY].world.messages.values() if m.to == "15553999999"]
        assert len(sent) == 1
    finally:
        await made.emulator_server.close()
