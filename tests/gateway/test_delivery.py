"""Delivery to tenants: isolation, signatures checked independently, retries, dead letters, replay."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from tests.conftest import eventually
from tests.gateway.conftest import (
    Gateway,
    GatewayFactory,
    Hit,
    Receivers,
    envelope,
    make_view,
    number_obj,
    secret_obj,
    tenant_obj,
    tenant_secrets,
    text_message,
    webhook_secret_for,
)
from wabaplane.gateway.cluster import ClusterView

ACME_WABA, GLOBEX_WABA = "102290129340398", "103344556677889"
ACME_PHONE, GLOBEX_PHONE = "106540352242922", "107788990011223"
ACME_KEY, GLOBEX_KEY = "wpk_acme-test-key", "wpk_globex-test-key"


def two_tenants(acme_url: str, globex_url: str, **acme: Any) -> ClusterView:
    return make_view(
        [tenant_obj("team-a", "acme", ACME_WABA, acme_url, **acme), tenant_obj("team-b", "globex", GLOBEX_WABA, globex_url)],
        [number_obj("team-a", "support", "acme", ACME_PHONE, "15550100001"),
         number_obj("team-b", "main", "globex", GLOBEX_PHONE, "442079460958")],
        tenant_secrets("team-a", "acme", ACME_KEY, webhook_secret_for("acme"))
        + tenant_secrets("team-b", "globex", GLOBEX_KEY, webhook_secret_for("globex")),
    )  # fmt: skip


def meta_style_check(body: bytes, header: str, secret: str) -> bool:
    """X-Hub-Signature-256 checked the way Meta documents it: HMAC-SHA256 of the raw body, hex."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header, "sha256=" + expected)


async def test_each_tenant_receives_exactly_its_own_units_signed_twice(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    acme, globex = await receivers(), await receivers()
    gateway = await gateway_factory(two_tenants(acme.url, globex.url))
    batch = envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.A1"), text_message(GLOBEX_PHONE, GLOBEX_WABA, "wamid.G1"),
                     text_message(ACME_PHONE, ACME_WABA, "wamid.A2"))  # fmt: skip
    assert (await gateway.post_webhook(batch)).status_code == 200
    await eventually(lambda: len(acme.hits) == 2 and len(globex.hits) == 1, what="three deliveries")
    assert sorted(acme.ids()) == ["wamid.A1", "wamid.A2"]
    assert globex.ids() == ["wamid.G1"]
    for receiver, tenant in ((acme, "acme"), (globex, "globex")):
        secret = webhook_secret_for(tenant)
        for hit in receiver.hits:
            assert meta_style_check(hit.body, hit.headers["X-Hub-Signature-256"], secret)
            Webhook(secret).verify(hit.body, hit.headers)
            [entry] = hit.payload["entry"]
            assert len(entry["changes"]) == 1, "one change per POST, as SDKs such as pywa expect"
            assert hit.payload["object"] == "whatsapp_business_account"
    with pytest.raises(Exception, match="No matching signature found"):
        Webhook(webhook_secret_for("globex")).verify(acme.hits[0].body, acme.hits[0].headers)


async def test_a_duplicate_from_meta_is_delivered_once(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    acme, globex = await receivers(), await receivers()
    gateway = await gateway_factory(two_tenants(acme.url, globex.url))
    for _ in range(3):
        assert (
            await gateway.post_webhook(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.dup")))
        ).status_code == 200
    await eventually(lambda: len(acme.hits) == 1, what="the delivery")
    await eventually(lambda: _pending_is(gateway, 0), what="an empty outbox")
    assert len(acme.hits) == 1


async def test_an_endpoint_down_for_a_while_gets_everything_and_others_are_unaffected(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    acme, globex = await receivers(), await receivers()
    down = True

    async def flaky(_: Hit) -> web.Response:
        return web.Response(status=503 if down else 200)

    acme.respond = flaky
    gateway = await gateway_factory(two_tenants(acme.url, globex.url), retry_schedule=(0.05,) * 200)
    for i in range(5):
        await gateway.post_webhook(envelope(text_message(ACME_PHONE, ACME_WABA, f"wamid.A{i}"),
                                            text_message(GLOBEX_PHONE, GLOBEX_WABA, f"wamid.G{i}")))  # fmt: skip
    await eventually(lambda: len(globex.hits) == 5, what="globex's deliveries while acme is down")
    await eventually(lambda: len(acme.hits) >= 10, what="acme's failed attempts")
    down = False
    await eventually(lambda: _pending_is(gateway, 0), what="an empty outbox")
    delivered = await gateway.store.list_deliveries("team-a", "acme", state="delivered")
    assert sorted(json.loads(d.value)["messages"][0]["id"] for d in delivered) == [
        f"wamid.A{i}" for i in range(5)
    ]
    assert sorted(globex.ids()) == [f"wamid.G{i}" for i in range(5)]


async def _pending_is(gateway: Gateway, count: int) -> bool:
    return (await gateway.store.stats()).pending == count


async def test_a_dead_endpoint_fills_the_dead_letters_and_replay_delivers_with_the_same_id(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    acme, globex = await receivers(), await receivers()
    alive = False

    async def dead(_: Hit) -> web.Response:
        return web.Response(status=200 if alive else 500)

    acme.respond = dead
    gateway = await gateway_factory(two_tenants(acme.url, globex.url))
    auth = {"Authorization": f"Bearer {ACME_KEY}"}
    await gateway.post_webhook(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.lost?"),
                                        text_message(GLOBEX_PHONE, GLOBEX_WABA, "wamid.fine")))  # fmt: skip

    async def dead_letters() -> list[dict[str, Any]]:
        return list((await gateway.client.get("/v1/dead-letters", headers=auth)).json()["data"])

    await eventually(dead_letters, what="a dead letter")
    [letter] = await dead_letters()
    assert letter["attempts"] == 4
    assert letter["lastError"] == "the endpoint answered HTTP 500"
    assert letter["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]["id"] == "wamid.lost?"
    assert globex.ids() == ["wamid.fine"]
    assert 'wabaplane_gateway_dead_lettered_total{target="tenant",tenant="team-a/acme"} 1.0' in (
        await gateway.client.get("/metrics")).text  # fmt: skip
    # Globex cannot see, fetch or replay it.
    globex_auth = {"Authorization": f"Bearer {GLOBEX_KEY}"}
    assert (await gateway.client.get("/v1/dead-letters", headers=globex_auth)).json()["data"] == []
    assert (
        await gateway.client.get(f"/v1/deliveries/{letter['id']}", headers=globex_auth)
    ).status_code == 404
    assert (
        await gateway.client.post(f"/v1/deliveries/{letter['id']}/replay", headers=globex_auth)
    ).status_code == 404
    alive = True
    replay = await gateway.client.post(f"/v1/deliveries/{letter['id']}/replay", headers=auth)
    assert (replay.status_code, replay.json()) == (202, {"replayed": 1})
    await eventually(
        lambda: acme.hits and acme.hits[-1].headers.get("X-Wabaplane-Attempt") == "1", what="the replay"
    )
    assert {hit.headers["webhook-id"] for hit in acme.hits} == {letter["id"]}
    fetched = (await gateway.client.get(f"/v1/deliveries/{letter['id']}", headers=auth)).json()
    assert fetched["state"] == "delivered"


async def test_a_time_range_replay_needs_a_start_and_only_takes_the_callers_deliveries(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    acme, globex = await receivers(), await receivers()
    gateway = await gateway_factory(two_tenants(acme.url, globex.url))
    await gateway.post_webhook(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.r1"),
                                        text_message(GLOBEX_PHONE, GLOBEX_WABA, "wamid.r2")))  # fmt: skip
    await eventually(lambda: acme.hits and globex.hits, what="both deliveries")
    auth = {"Authorization": f"Bearer {ACME_KEY}"}
    bad = await gateway.client.post("/v1/deliveries/replay", headers=auth, json={"states": ["delivered"]})
    assert bad.status_code == 400
    assert "since is required" in bad.json()["error"]["message"]
    bad_time = await gateway.client.post("/v1/deliveries/replay", headers=auth, json={"since": "yesterday"})
    assert "since must be Unix seconds or an RFC 3339 time" in bad_time.json()["error"]["message"]
    replay = await gateway.client.post("/v1/deliveries/replay", headers=auth,
                                       json={"since": "2020-01-01T00:00:00Z", "states": ["delivered"]})  # fmt: skip
    assert replay.json() == {"replayed": 1}
    await eventually(lambda: len(acme.hits) == 2, what="the replayed delivery")
    assert len(globex.hits) == 1
    assert (
        await gateway.client.get("/v1/deliveries", headers={"Authorization": "Bearer wpk_wrong"})
    ).status_code == 401
    assert (await gateway.client.get("/v1/deliveries?state=lost", headers=auth)).status_code == 400


async def test_retry_after_is_honoured(gateway_factory: GatewayFactory, receivers: Receivers) -> None:
    acme, globex = await receivers(), await receivers()

    async def busy(_: Hit) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "120"})

    acme.respond = busy
    gateway = await gateway_factory(two_tenants(acme.url, globex.url))
    await gateway.post_webhook(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.slow")))
    await eventually(lambda: acme.hits, what="the first attempt")
    await eventually(lambda: _attempts_recorded(gateway), what="the failed attempt recorded")
    [pending] = await gateway.store.list_deliveries("team-a", "acme", state="pending")
    assert pending.next_attempt_at >= pending.created_at + 119, (
        "the 0.05 s schedule yields to Retry-After: 120"
    )


async def _attempts_recorded(gateway: Gateway) -> bool:
    found = await gateway.store.list_deliveries("team-a", "acme")
    return bool(found) and found[0].attempts == 1


async def test_410_gone_holds_deliveries_until_the_tenant_enables_the_endpoint(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    acme, globex = await receivers(), await receivers()
    gone = True

    async def answer(_: Hit) -> web.Response:
        return web.Response(status=410 if gone else 200)

    acme.respond = answer
    gateway = await gateway_factory(two_tenants(acme.url, globex.url))
    await gateway.post_webhook(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.g1")))
    await eventually(lambda: acme.hits, what="the 410")
    await gateway.post_webhook(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.g2")))
    await eventually(lambda: _pending_is(gateway, 2), what="both held")
    assert len(acme.hits) == 1
    gone = False
    enabled = await gateway.client.post(
        "/v1/endpoint/enable", headers={"Authorization": f"Bearer {ACME_KEY}"}
    )
    assert enabled.json() == {"enabled": 1}
    await eventually(lambda: sorted(acme.ids()) == ["wamid.g1", "wamid.g2"], what="delivery after enabling")


async def test_a_suspended_tenants_deliveries_are_held_not_dropped(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    acme, globex = await receivers(), await receivers()
    view = two_tenants(acme.url, globex.url, suspended=True)
    gateway = await gateway_factory(view)
    await gateway.post_webhook(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.s1"),
                                        text_message(GLOBEX_PHONE, GLOBEX_WABA, "wamid.s2")))  # fmt: skip
    await eventually(lambda: globex.hits, what="globex's delivery")
    await eventually(lambda: _held(gateway), what="acme's delivery held")
    assert acme.hits == []
    view.load(
        "tenants",
        [
            tenant_obj("team-a", "acme", ACME_WABA, acme.url),
            tenant_obj("team-b", "globex", GLOBEX_WABA, globex.url),
        ],
    )
    await eventually(lambda: acme.ids() == ["wamid.s1"], what="delivery after the suspension ends")


async def _held(gateway: Gateway) -> bool:
    text = (await gateway.client.get("/metrics")).text
    return 'wabaplane_gateway_deliveries_held{reason="suspended",tenant="team-a/acme"} 1.0' in text


async def test_a_slow_tenant_never_delays_another(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    acme, globex = await receivers(), await receivers()
    release = asyncio.Event()

    async def stuck(_: Hit) -> web.Response:
        await release.wait()
        return web.Response()

    acme.respond = stuck
    gateway = await gateway_factory(two_tenants(acme.url, globex.url, max_in_flight=2))
    await gateway.post_webhook(
        envelope(*[text_message(ACME_PHONE, ACME_WABA, f"wamid.slow{i}") for i in range(6)])
    )
    await eventually(lambda: len(acme.hits) == 2, what="acme's two slots taken")
    await gateway.post_webhook(envelope(text_message(GLOBEX_PHONE, GLOBEX_WABA, "wamid.quick")))
    await eventually(lambda: globex.ids() == ["wamid.quick"], what="globex delivered while acme is stuck")
    assert len(acme.hits) == 2, "acme never has more than maxInFlightDeliveries at once"
    release.set()
    await eventually(lambda: len(acme.unique()) == 6, what="acme's backlog")


async def test_a_rotated_webhook_secret_signs_with_both_during_the_overlap(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    acme, globex = await receivers(), await receivers()
    view = two_tenants(acme.url, globex.url)
    old, new = webhook_secret_for("acme"), webhook_secret_for("acme-new")
    view.load("secrets", [*tenant_secrets("team-b", "globex", GLOBEX_KEY, webhook_secret_for("globex")),
                          secret_obj("team-a", "acme-api-key", {"api-key": ACME_KEY}),
                          secret_obj("team-a", "acme-webhook-secret", {"secret": new, "previous-secret": old,
                                                                       "previous-expires-at": "2999-01-01T00:00:00Z"})])  # fmt: skip
    gateway = await gateway_factory(view)
    await gateway.post_webhook(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.rot")))
    await eventually(lambda: acme.hits, what="the delivery")
    [hit] = acme.hits
    assert len(hit.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(hit.body, hit.headers)
    Webhook(new).verify(hit.body, hit.headers)
    assert meta_style_check(hit.body, hit.headers["X-Hub-Signature-256"], new)


async def test_management_events_reach_the_operator_with_its_token(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    from pydantic import SecretStr

    acme, globex, operator = await receivers(), await receivers(), await receivers()
    gateway = await gateway_factory(two_tenants(acme.url, globex.url),
                                    operator_url=operator.url.removesuffix("/hooks"),
                                    management_token=SecretStr("mgmt-token"))  # fmt: skip
    status = {"id": GLOBEX_WABA, "time": 1800000000, "changes": [{"field": "message_template_status_update", "value": {
        "event": "APPROVED", "message_template_id": 42, "message_template_name": "hello",
        "message_template_language": "en_US", "reason": "NONE"}}]}  # fmt: skip
    await gateway.post_webhook(envelope(status))
    await eventually(lambda: operator.hits, what="the operator's delivery")
    [hit] = operator.hits
    assert hit.headers["Authorization"] == "Bearer mgmt-token"
    assert hit.payload["entry"][0]["changes"][0]["value"]["message_template_id"] == 42
    assert globex.hits == [], "globex did not ask for template events"


@st.composite
def worlds(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    tenants = draw(st.integers(min_value=1, max_value=5))
    events = draw(st.lists(st.tuples(st.integers(0, tenants), st.integers(0, 9)), min_size=1, max_size=25))
    return tenants, events


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(world=worlds(), batch_size=st.integers(1, 8))
async def test_isolation_property_each_tenant_gets_its_own_units_once_and_nothing_else(
    gateway_factory: GatewayFactory,
    receivers: Receivers,
    world: tuple[int, list[tuple[int, int]]],
    batch_size: int,
) -> None:
    """Random tenants and batches mixing tenants, unknown numbers and duplicates (event numbers repeat)."""
    count, events = world
    tenant_receivers = [await receivers() for _ in range(count)]
    tenants, numbers, secrets = [], [], []
    for index, receiver in enumerate(tenant_receivers):
        waba, phone = str(200000 + index), str(300000 + index)
        tenants.append(tenant_obj(f"ns-{index}", f"t{index}", waba, receiver.url))
        numbers.append(number_obj(f"ns-{index}", "n", f"t{index}", phone, str(155500000 + index)))
        secrets += tenant_secrets(f"ns-{index}", f"t{index}", f"wpk_{index}", webhook_secret_for(f"t{index}"))
    gateway = await gateway_factory(make_view(tenants, numbers, secrets))
    # Tenant index `count` is nobody's: its number is unknown and must reach no one.
    entries = [
        text_message(str(300000 + owner), str(200000 + owner), f"wamid.{owner}.{n}") for owner, n in events
    ]
    for start in range(0, len(entries), batch_size):
        assert (await gateway.post_webhook(envelope(*entries[start : start + batch_size]))).status_code == 200
    expected = {i: sorted({f"wamid.{o}.{n}" for o, n in events if o == i}) for i in range(count)}
    await eventually(lambda: _pending_is(gateway, 0), what="an empty outbox")
    for index, receiver in enumerate(tenant_receivers):
        assert sorted(receiver.ids()) == expected[index]
        assert len(receiver.hits) == len(expected[index]), "each unit exactly once"
        for hit in receiver.hits:
            Webhook(webhook_secret_for(f"t{index}")).verify(hit.body, hit.headers)
    unroutable = {f"wamid.{o}.{n}" for o, n in events if o == count}
    assert len(await gateway.store.unroutable(limit=500)) == len(unroutable)


def test_webhook_secret_helper_makes_standard_secrets() -> None:
    secret = webhook_secret_for("acme")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
