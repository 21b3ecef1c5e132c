"""POST /webhook and the handshake: signatures first, limits, bad input, durability before 200."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.conftest import (
    APP_SECRET,
    VERIFY_TOKEN,
    GatewayFactory,
    envelope,
    make_view,
    number_obj,
    signed,
    tenant_obj,
    text_message,
)
from wabaplane.emulator.webhooks import sign
from wabaplane.gateway.cluster import ClusterView

WABA, PHONE = "102290129340398", "106540352242922"


def acme_view(url: str | None = "https://acme.example/hook") -> ClusterView:
    return make_view([tenant_obj("team-a", "acme", WABA, url)], [number_obj("team-a", "support", "acme", PHONE, "15550100001")],
                     [])  # fmt: skip


async def test_the_handshake_echoes_the_challenge_only_for_the_right_token(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = await gateway_factory(acme_view())
    ok = await gateway.client.get("/webhook", params={"hub.mode": "subscribe", "hub.challenge": "1158201444",
                                                      "hub.verify_token": VERIFY_TOKEN})  # fmt: skip
    assert (ok.status_code, ok.text) == (200, "1158201444")
    for params in ({"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "wrong"},
                   {"hub.mode": "unsubscribe", "hub.challenge": "1", "hub.verify_token": VERIFY_TOKEN}, {}):  # fmt: skip
        refused = await gateway.client.get("/webhook", params=params)
        assert refused.status_code == 403
        assert "1" not in refused.text.split("verification failed")[0]


async def test_a_signed_event_is_stored_before_the_200(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(acme_view(url=None))
    response = await gateway.post_webhook(envelope(text_message(PHONE, WABA, "wamid.1")))
    assert response.status_code == 200
    assert response.json() == {"units": 1, "stored": 1, "duplicates": 0}
    again = await gateway.post_webhook(envelope(text_message(PHONE, WABA, "wamid.1")))
    assert again.json() == {"units": 1, "stored": 0, "duplicates": 1}


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=abc", "sha256=" + "0" * 64, "sha256=zz", "SHA256=" + "a" * 64],
)
async def test_a_missing_or_wrong_signature_is_refused_and_stores_nothing(
    gateway_factory: GatewayFactory, header: str | None
) -> None:
    gateway = await gateway_factory(acme_view())
    body, _ = signed(envelope(text_message(PHONE, WABA, "wamid.forged")))
    headers = {"Content-Type": "application/json"} | (
        {"X-Hub-Signature-256": header} if header is not None else {}
    )
    response = await gateway.client.post("/webhook", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "missing or wrong X-Hub-Signature-256"
    assert (await gateway.store.stats()).pending == 0
    # The forged key did not poison the dedupe memory: the genuine event is still new.
    assert (await gateway.post_webhook(envelope(text_message(PHONE, WABA, "wamid.forged")))).json()[
        "stored"
    ] == 1


async def test_both_app_secrets_are_accepted_during_a_rotation(gateway_factory: GatewayFactory) -> None:
    from pydantic import SecretStr

    gateway = await gateway_factory(acme_view(), app_secrets=[SecretStr("new-secret"), SecretStr(APP_SECRET)])
    assert (
        await gateway.post_webhook(envelope(text_message(PHONE, WABA, "wamid.1")), "new-secret")
    ).status_code == 200
    assert (
        await gateway.post_webhook(envelope(text_message(PHONE, WABA, "wamid.2")), APP_SECRET)
    ).status_code == 200
    assert (
        await gateway.post_webhook(envelope(text_message(PHONE, WABA, "wamid.3")), "other")
    ).status_code == 401


async def test_the_signature_covers_the_exact_bytes_meta_sent(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(acme_view(url=None))
    message = text_message(PHONE, WABA, "wamid.ü", body="Grüße 👋")
    body = json.dumps(envelope(message), ensure_ascii=True).encode()
    assert b"\\u00fc" in body
    ok = await gateway.client.post(
        "/webhook", content=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET)}
    )
    assert ok.status_code == 200
    reserialised = json.dumps(envelope(message), ensure_ascii=False).encode()
    refused = await gateway.client.post("/webhook", content=reserialised,
                                        headers={"X-Hub-Signature-256": sign(body, APP_SECRET)})  # fmt: skip
    assert refused.status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not valid JSON"),
        (b'{"object": "page", "entry": []}', '"object" must be "whatsapp_business_account"'),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
async def test_malformed_bodies_answer_400_with_the_reason(
    gateway_factory: GatewayFactory, body: bytes, message: str
) -> None:
    gateway = await gateway_factory(acme_view())
    response = await gateway.client.post(
        "/webhook", content=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET)}
    )
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


async def test_bodies_over_the_limit_answer_413_without_being_read(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(acme_view(), max_body_bytes=1000)
    host, port = gateway.server.host, gateway.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3000001\r\n\r\n"
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413")

    async def chunks() -> Any:
        yield b"x" * 600
        yield b"y" * 600

    chunked = await gateway.client.post("/webhook", content=chunks())
    assert chunked.status_code == 413


async def test_before_the_routing_table_is_loaded_meta_is_asked_to_retry(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = await gateway_factory(ClusterView())
    gateway.view._synced["tenants@*"] = False
    response = await gateway.post_webhook(envelope(text_message(PHONE, WABA, "wamid.1")))
    assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
    assert (await gateway.client.get("/readyz")).status_code == 503
    assert (await gateway.store.stats()).pending == 0


async def test_an_unavailable_store_answers_503_so_meta_retries(
    gateway_factory: GatewayFactory, postgres: Any
) -> None:
    import subprocess
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    gateway = await gateway_factory(acme_view(), store_url=postgres.create_database(name))
    assert (await gateway.post_webhook(envelope(text_message(PHONE, WABA, "wamid.1")))).status_code == 200
    await asyncio.to_thread(subprocess.run, ["psql", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "-q", "-c",
                    f'DROP DATABASE "{name}" WITH (FORCE)'], check=True, capture_output=True)  # fmt: skip
    response = await gateway.post_webhook(envelope(text_message(PHONE, WABA, "wamid.2")))
    assert (response.status_code, response.headers["Retry-After"]) == (503, "5")
    assert response.json()["error"]["message"] == "the event store is unavailable; retry"
    assert (await gateway.client.get("/readyz")).json() == {"ready": False, "reason": "store unavailable"}


async def test_overload_answers_503_at_once_instead_of_queueing(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(acme_view(), max_in_flight_requests=1)
    store = gateway.store
    release = asyncio.Event()
    original = store.ingest

    async def slow_ingest(batch: Any) -> Any:
        await release.wait()
        return await original(batch)

    store.ingest = slow_ingest  # type: ignore[method-assign]
    first = asyncio.create_task(gateway.post_webhook(envelope(text_message(PHONE, WABA, "wamid.1"))))
    await asyncio.sleep(0)
    while not first.done() and not release.is_set():
        second = await gateway.post_webhook(envelope(text_message(PHONE, WABA, "wamid.2")))
        if second.status_code == 503:
            assert second.headers["Retry-After"] == "1"
            release.set()
    assert (await first).status_code == 200


async def test_unroutable_units_are_kept_counted_and_listed_for_the_platform(
    gateway_factory: GatewayFactory,
) -> None:
    from pydantic import SecretStr

    gateway = await gateway_factory(acme_view(), admin_token=SecretStr("admin-token"))
    assert (
        await gateway.post_webhook(envelope(text_message("999000111", WABA, "wamid.stray")))
    ).status_code == 200
    listed = await gateway.client.get("/v1/admin/unroutable", headers={"Authorization": "Bearer admin-token"})
    [item] = listed.json()["data"]
    assert item["reason"] == "no Ready PhoneNumber (without conflict) for phone number id 999000111"
    assert (
        await gateway.client.get("/v1/admin/unroutable", headers={"Authorization": "Bearer nope"})
    ).status_code == 401
    metrics = (await gateway.client.get("/metrics")).text
    assert 'wabaplane_gateway_units_total{outcome="unroutable",tenant=""} 1.0' in metrics


async def test_metrics_can_move_off_the_public_port(gateway_factory: GatewayFactory) -> None:
    import httpx

    from tests.conftest import free_port

    port = free_port()
    gateway = await gateway_factory(acme_view(), metrics_port=port, metrics_host="127.0.0.1")
    await gateway.post_webhook(envelope(text_message("999000111", WABA, "wamid.stray")))
    assert (await gateway.client.get("/metrics")).status_code == 404, "tenant names stay off the public port"
    async with httpx.AsyncClient() as client:
        scraped = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert scraped.status_code == 200
    assert 'wabaplane_gateway_units_total{outcome="unroutable",tenant=""} 1.0' in scraped.text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
envelope_like = st.fixed_dictionaries(
    {"object": st.sampled_from(["whatsapp_business_account", "page", 3]),
     "entry": st.lists(st.fixed_dictionaries({"id": st.one_of(st.just(WABA), st.text(max_size=5), st.integers()),
                                              "changes": st.lists(st.fixed_dictionaries(
                                                  {"field": st.sampled_from(["messages", "security", "x"]),
                                                   "value": json_values}), max_size=3)}), max_size=3)})  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(envelope_like, json_values), raw=st.binary(max_size=200), sign_it=st.booleans(),
       header=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80))  # fmt: skip
async def test_fuzzed_bodies_and_headers_never_give_5xx_nor_route(
    gateway_factory: GatewayFactory, payload: Any, raw: bytes, sign_it: bool, header: str
) -> None:
    gateway = await gateway_factory(acme_view())
    for body in (json.dumps(payload).encode(), raw):
        signature = sign(body, APP_SECRET) if sign_it else header
        headers = {"X-Hub-Signature-256": signature.strip()}
        response = await gateway.client.post("/webhook", content=body, headers=headers)
        assert response.status_code in {200, 400, 401}, response.text
    assert await gateway.store.due_groups() == {}
