"""The emulator's webhooks look, sign, batch, retry and route like Meta's (reference §1)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

from tests.conftest import eventually
from tests.emulator.conftest import (
    ACME_SUPPORT,
    ACME_TOKEN,
    ACME_WABA,
    APP_SECRET,
    CUSTOMER,
    GLOBEX_PHONE,
    GLOBEX_WABA,
    Harness,
    Receiver,
)


async def set_callback(harness: Harness, receiver: Receiver) -> None:
    response = await harness.control(
        "POST", "callback", {"url": receiver.url, "verify_token": receiver.verify_token}
    )
    assert response.status_code == 200, response.text


async def inbound(harness: Harness, phone: str, text: str, sender: str = CUSTOMER) -> str:
    response = await harness.control(
        "POST", "inbound", {"phone_number_id": phone, "from": sender, "text": text}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def test_callback_requires_the_verification_handshake(harness: Harness, receivers: Any) -> None:
    receiver = await receivers("/hook", verify_token="expected")
    response = await harness.control("POST", "callback", {"url": receiver.url, "verify_token": "other"})
    assert response.status_code == 400
    assert "did not answer the verification challenge" in response.json()["error"]
    assert harness.emulator.settings.callback_url is None


async def test_signature_covers_the_exact_ascii_bytes(harness: Harness, receivers: Any) -> None:
    receiver = await receivers()
    await set_callback(harness, receiver)
    await inbound(harness, ACME_SUPPORT, "Grüße aus Köln 👋 / ok")
    await eventually(lambda: receiver.posts, what="a webhook")
    post = receiver.posts[0]
    expected = "sha256=" + hmac.new(APP_SECRET.encode(), post.body, hashlib.sha256).hexdigest()
    assert post.headers["X-Hub-Signature-256"] == expected
    post.body.decode("ascii")  # Meta escapes every non-ASCII character
    assert b"Gr\\u00fc\\u00dfe" in post.body
    assert b"\\ud83d\\udc4b" in post.body  # lowercase hex, surrogate pair for the emoji
    assert post.headers["Content-Type"] == "application/json"
    message = json.loads(post.body)["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["text"]["body"] == "Grüße aus Köln 👋 / ok"


async def test_message_payload_shapes(harness: Harness, receivers: Any) -> None:
    receiver = await receivers()
    await set_callback(harness, receiver)
    wamid = await inbound(harness, ACME_SUPPORT, "hello")
    await eventually(lambda: receiver.changes("messages"), what="the message webhook")
    payload = receiver.json()[0]
    assert payload["object"] == "whatsapp_business_account"
    entry = payload["entry"][0]
    assert entry["id"] == ACME_WABA
    assert "time" not in entry  # messages-field entries carry no time
    value = entry["changes"][0]["value"]
    assert value["messaging_product"] == "whatsapp"
    assert value["metadata"] == {"display_phone_number": "15550100001", "phone_number_id": ACME_SUPPORT}
    (contact,) = value["contacts"]
    assert contact["profile"] == {"name": "Customer"}
    assert contact["wa_id"] == CUSTOMER
    assert re.fullmatch(r"US\.[0-9]{19}", contact["user_id"]), "a business-scoped user id"
    message = value["messages"][0]
    assert message["id"] == wamid
    assert message["from"] == CUSTOMER
    assert isinstance(message["timestamp"], str)
    assert message["timestamp"].isdigit()
    assert message["type"] == "text"
    assert message["from_user_id"] == contact["user_id"]


async def test_status_webhooks_follow_a_send(harness: Harness, receivers: Any) -> None:
    receiver = await receivers()
    await set_callback(harness, receiver)
    await inbound(harness, ACME_SUPPORT, "hello")
    async with harness.client() as client:
        sent = await client.send_message(ACME_SUPPORT, ACME_TOKEN, {"to": CUSTOMER, "type": "text",
                                                                    "text": {"body": "hi"},
                                                                    "biz_opaque_callback_data": "order-7"})  # fmt: skip

    def statuses() -> list[dict[str, Any]]:
        return [s for change in receiver.changes("messages") for s in change["value"].get("statuses", [])]

    await eventually(lambda: len(statuses()) == 3, what="three statuses")
    assert sorted(s["status"] for s in statuses()) == ["delivered", "read", "sent"]
    for status in statuses():
        assert status["id"] == sent.message_id
        assert status["recipient_id"] == CUSTOMER
        assert isinstance(status["timestamp"], str)
        assert status["biz_opaque_callback_data"] == "order-7"
    sent_status = next(s for s in statuses() if s["status"] == "sent")
    assert sent_status["pricing"]["pricing_model"] == "PMP"
    assert "conversation" not in sent_status  # gone from v24 on


async def test_failed_status_carries_errors(harness: Harness, receivers: Any) -> None:
    receiver = await receivers()
    await set_callback(harness, receiver)
    async with harness.client() as client:
        await client.send_message(ACME_SUPPORT, ACME_TOKEN, {"to": "15550001111", "type": "text",
                                                             "text": {"body": "outside the window"}})  # fmt: skip
    change = await eventually(lambda: receiver.changes("messages"), what="the failed status")
    (status,) = change[0]["value"]["statuses"]
    assert status["status"] == "failed"
    (error,) = status["errors"]
    assert error["code"] == 131047
    assert error["title"] == error["message"]
    assert "details" in error["error_data"]


async def test_one_post_can_carry_several_wabas(harness: Harness, receivers: Any) -> None:
    receiver = await receivers()
    await set_callback(harness, receiver)
    harness.emulator.settings.webhook_batch_window = 1.0  # wide enough for three control calls
    await inbound(harness, ACME_SUPPORT, "one")
    await inbound(harness, GLOBEX_PHONE, "two", sender="447700900123")
    await inbound(harness, ACME_SUPPORT, "three")
    await eventually(lambda: len(receiver.changes("messages")) == 3, what="three changes")
    assert len(receiver.posts) == 1, "changes queued within the batch window share one POST"
    entries = receiver.json()[0]["entry"]
    assert sorted(entry["id"] for entry in entries) == sorted([ACME_WABA, GLOBEX_WABA])
    acme = next(entry for entry in entries if entry["id"] == ACME_WABA)
    assert len(acme["changes"]) == 2


async def test_non_200_is_retried_with_the_same_bytes(harness: Harness, receivers: Any) -> None:
    receiver = await receivers()
    receiver.statuses = [500, 503]
    await set_callback(harness, receiver)
    await inbound(harness, ACME_SUPPORT, "retry me")
    await eventually(lambda: len(receiver.posts) == 3, what="two retries")
    assert receiver.posts[0].body == receiver.posts[1].body == receiver.posts[2].body
    deliveries = (await harness.control("GET", "webhooks")).json()["data"]
    assert [a["status"] for a in deliveries[0]["attempts"]] == [500, 503, 200]
    assert deliveries[0]["delivered"] is True


async def test_redeliver_sends_the_same_bytes_and_signature_again(harness: Harness, receivers: Any) -> None:
    receiver = await receivers()
    await set_callback(harness, receiver)
    await inbound(harness, ACME_SUPPORT, "say it twice")
    await eventually(lambda: len(receiver.posts) == 1, what="the first webhook")
    response = await harness.control("POST", "webhooks/1/redeliver")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == 2
    await eventually(lambda: len(receiver.posts) == 2, what="the redelivery")
    first, second = receiver.posts
    assert second.body == first.body
    assert second.headers["X-Hub-Signature-256"] == first.headers["X-Hub-Signature-256"]
    unknown = await harness.control("POST", "webhooks/99/redeliver")
    assert unknown.status_code == 400
    assert "unknown webhook delivery id 99" in unknown.json()["error"]


async def test_delivery_gives_up_after_the_schedule(harness: Harness, receivers: Any) -> None:
    receiver = await receivers()
    await set_callback(harness, receiver)
    receiver.statuses = [500] * 10
    await inbound(harness, ACME_SUPPORT, "never accepted")
    schedule = harness.emulator.settings.webhook_retry_schedule
    await eventually(lambda: len(receiver.posts) == len(schedule) + 1, what="every attempt")

    async def abandoned() -> bool:
        return bool((await harness.control("GET", "webhooks")).json()["data"][0]["abandoned"])

    await eventually(lambda: harness.emulator.dispatcher.deliveries[0].abandoned, what="abandonment")
    assert await abandoned()


async def test_override_precedence_and_field_allow_list(harness: Harness, receivers: Any) -> None:
    app = await receivers("/app")
    waba_override = await receivers("/waba")
    phone_override = await receivers("/phone")
    await set_callback(harness, app)
    async with harness.client() as client:
        await client.subscribe_app(ACME_WABA, ACME_TOKEN, override_callback_uri=waba_override.url,
                                   verify_token=waba_override.verify_token)  # fmt: skip
        await inbound(harness, "106540352242923", "to the sales number")  # no phone override: WABA override
        await eventually(lambda: waba_override.changes("messages"), what="the WABA override")
        await client.request("POST", ACME_SUPPORT, token=ACME_TOKEN, json={"webhook_configuration": {
            "override_callback_uri": phone_override.url, "verify_token": phone_override.verify_token}})  # fmt: skip
        await inbound(harness, ACME_SUPPORT, "to the support number")
        await eventually(lambda: phone_override.changes("messages"), what="the phone override")
        created = await client.create_template(ACME_WABA, ACME_TOKEN, {
            "name": "hello", "language": "en", "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Hello there"}]})  # fmt: skip
    # Template webhooks ignore overrides: always the app callback.
    change = await eventually(lambda: app.changes("message_template_status_update"), what="template status")
    assert app.changes("messages") == []
    assert waba_override.changes("message_template_status_update") == []
    value = change[0]["value"]
    assert value["event"] == "APPROVED"
    assert value["message_template_id"] == int(created.id)
    assert isinstance(value["message_template_id"], int)
    assert value["message_template_name"] == "hello"
    entry = next(
        e for p in app.json() for e in p["entry"] if e["changes"][0]["field"].startswith("message_t")
    )
    assert isinstance(entry["time"], int)


async def test_unsubscribed_wabas_get_no_webhooks(harness: Harness, receivers: Any) -> None:
    receiver = await receivers()
    await set_callback(harness, receiver)
    async with harness.client() as client:
        await client.unsubscribe_app(ACME_WABA, ACME_TOKEN)
    await inbound(harness, ACME_SUPPORT, "nobody listens")
    await inbound(harness, GLOBEX_PHONE, "globex listens", sender="447700900123")
    await eventually(lambda: receiver.changes("messages"), what="globex's webhook")
    assert [c["value"]["metadata"]["phone_number_id"] for c in receiver.changes("messages")] == [GLOBEX_PHONE]


async def test_management_fields(harness: Harness, receivers: Any) -> None:
    receiver = await receivers()
    await set_callback(harness, receiver)
    response = await harness.control(
        "POST",
        f"phone-numbers/{ACME_SUPPORT}",
        {"quality_rating": "RED", "messaging_limit": "TIER_2K", "event": "UPGRADE"},
    )
    assert response.status_code == 200
    partner = {
        "event": "PARTNER_ADDED",
        "waba_info": {"waba_id": ACME_WABA, "owner_business_id": "500123456789012"},
    }
    await harness.control(
        "POST",
        "webhooks",
        {"waba_id": ACME_WABA, "entry_id": "999000111222333", "field": "account_update", "value": partner},
    )
    await harness.control("POST", "webhooks", {"waba_id": ACME_WABA, "field": "security",
                                               "value": {"display_phone_number": "15550100001",
                                                         "event": "PIN_RESET_REQUEST"}})  # fmt: skip
    await eventually(lambda: len(receiver.changes()) == 3, what="three management changes")
    quality = receiver.changes("phone_number_quality_update")[0]["value"]
    assert quality == {"display_phone_number": "15550100001", "event": "UPGRADE", "current_limit": "TIER_2K",
                       "max_daily_conversations_per_business": "TIER_2K", "old_limit": "TIER_250"}  # fmt: skip
    entries = {e["changes"][0]["field"]: e for p in receiver.json() for e in p["entry"]}
    assert entries["account_update"]["id"] == "999000111222333"  # the partner's id, not the WABA
    assert entries["account_update"]["changes"][0]["value"]["waba_info"]["waba_id"] == ACME_WABA
    assert entries["security"]["id"] == ACME_WABA


async def test_control_api_refuses_bad_input_clearly(harness: Harness) -> None:
    response = await harness.control("POST", "inbound", {"phone_number_id": ACME_SUPPORT, "from": "not a number",
                                                          "text": "x"})  # fmt: skip
    assert response.status_code == 400
    assert "from" in response.json()["error"]
    response = await harness.control("POST", "tokens", {"waba_ids": ["1"]})
    assert response.status_code == 400
    assert "unknown WABA ids" in response.json()["error"]
    response = await harness.control("POST", "faults", {"path": "x", "surprise": 1})
    assert response.status_code == 400
    assert "surprise" in response.json()["error"]
