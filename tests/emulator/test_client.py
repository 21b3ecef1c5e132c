"""The Graph client against the emulator: every method, and every error class by Meta's code."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest

from tests.conftest import eventually
from tests.emulator.conftest import (
    ACME_BUSINESS,
    ACME_SALES,
    ACME_SUPPORT,
    ACME_TOKEN,
    ACME_WABA,
    CUSTOMER,
    GLOBEX_PHONE,
    GLOBEX_TOKEN,
    GLOBEX_WABA,
    Harness,
)
from wabaplane.emulator.config import EmulatorSettings, Limits
from wabaplane.meta import errors

TEMPLATE = {
    "name": "order_update",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "BODY",
            "text": "Hi {{1}}, your order {{2}} has shipped.",
            "example": {"body_text": [["Ann", "#1"]]},
        },
        {"type": "FOOTER", "text": "Acme"},
    ],
}


def text(body: str, to: str = CUSTOMER) -> dict[str, Any]:
    return {"to": to, "type": "text", "text": {"body": body}}


async def test_code_exchange_yields_a_scoped_token(harness: Harness) -> None:
    code = (await harness.control("POST", "signup-codes", {"business_id": ACME_BUSINESS, "waba_ids": [ACME_WABA],
                                                             "expires_in": 5184000})).json()["code"]  # fmt: skip
    async with harness.client() as client:
        token = await client.exchange_code(code)
        assert token.token_type == "bearer"
        assert token.expires_in == 5184000
        assert token.access_token.get_secret_value() not in repr(token)
        info = await client.debug_token(token.access_token.get_secret_value())
        assert info.is_valid
        assert info.target_ids("whatsapp_business_management") == [ACME_WABA]
        assert info.target_ids("whatsapp_business_messaging") == [ACME_WABA]
        assert info.expires_at is not None
        assert info.expires_at > 0
        with pytest.raises(errors.InvalidParameter, match="has been used"):
            await client.exchange_code(code)


async def test_code_exchange_with_a_wrong_secret_fails(harness: Harness) -> None:
    async with harness.client(app_secret="wrong") as client:
        with pytest.raises(errors.MetaError) as raised:
            await client.exchange_code("AQanything")
    assert "wrong" not in str(raised.value)


async def test_debug_token_of_an_unknown_token(harness: Harness) -> None:
    async with harness.client() as client:
        info = await client.debug_token("EAAnot-a-token")
    assert info.is_valid is False
    assert info.error is not None
    assert info.error["code"] == 190


async def test_subscription_lifecycle(harness: Harness, receivers: Any) -> None:
    override = await receivers("/acme-override")
    async with harness.client() as client:
        assert await client.unsubscribe_app(ACME_WABA, ACME_TOKEN)
        assert await client.subscribed_apps(ACME_WABA, ACME_TOKEN) == []
        assert await client.subscribe_app(ACME_WABA, ACME_TOKEN)
        (app,) = await client.subscribed_apps(ACME_WABA, ACME_TOKEN)
        assert app.app_id == harness.emulator.settings.app_id
        assert app.override_callback_uri is None
        assert await client.subscribe_app(ACME_WABA, ACME_TOKEN, override_callback_uri=override.url,
                                          verify_token=override.verify_token)  # fmt: skip
        (app,) = await client.subscribed_apps(ACME_WABA, ACME_TOKEN)
        assert app.override_callback_uri == override.url
        with pytest.raises(errors.MetaError) as raised:
            await client.subscribe_app(
                ACME_WABA, ACME_TOKEN, override_callback_uri=override.url, verify_token="bad"
            )
        assert raised.value.code == 2200


async def test_phone_numbers_are_paged_and_typed(harness: Harness) -> None:
    async with harness.client(page_size=1) as client:
        numbers = await client.phone_numbers(ACME_WABA, ACME_TOKEN)
        assert sorted(n.id for n in numbers) == sorted([ACME_SUPPORT, ACME_SALES])
        phone = await client.phone_number(ACME_SUPPORT, ACME_TOKEN)
    assert phone.display_phone_number == "+1 555-010-0001"
    assert phone.verified_name == "Acme Support"
    assert phone.quality_rating == "GREEN"
    assert phone.throughput is not None
    assert phone.throughput.level == "STANDARD"
    assert phone.messaging_limit == "TIER_250"


async def test_registration(harness: Harness) -> None:
    async with harness.client() as client:
        assert await client.register(ACME_SALES, ACME_TOKEN, "246810")
        assert harness.emulator.world.phones[ACME_SALES].registered
        with pytest.raises(errors.RegistrationError) as raised:
            await client.register(ACME_SALES, ACME_TOKEN, "999999")
        assert raised.value.code == 133005
        assert await client.deregister(ACME_SALES, ACME_TOKEN)
        assert await client.set_two_step_pin(ACME_SALES, ACME_TOKEN, "135790")


async def test_registration_rate_limit(harness: Harness) -> None:
    harness.emulator.settings.limits.registrations_per_72_hours = 2
    async with harness.client() as client:
        await client.register(ACME_SALES, ACME_TOKEN, "246810")
        await client.deregister(ACME_SALES, ACME_TOKEN)
        with pytest.raises(errors.RateLimited) as raised:
            await client.register(ACME_SALES, ACME_TOKEN, "246810")
    assert raised.value.code == 133016


async def test_template_lifecycle(harness: Harness) -> None:
    async with harness.client() as client:
        created = await client.create_template(ACME_WABA, ACME_TOKEN, TEMPLATE)
        assert created.status == "PENDING"
        assert created.id.isdigit()
        world = harness.emulator.world
        await eventually(lambda: world.templates[created.id].status == "APPROVED", what="approval")
        fetched = await client.template(created.id, ACME_TOKEN)
        assert fetched.status == "APPROVED"
        assert fetched.name == "order_update"
        listed = await client.templates(ACME_WABA, ACME_TOKEN, name="order_update")
        assert [t.id for t in listed] == [created.id]
        with pytest.raises(errors.InvalidParameter, match="already exists"):
            await client.create_template(ACME_WABA, ACME_TOKEN, TEMPLATE)
        body = [
            {
                "type": "BODY",
                "text": "Hello {{1}}, order {{2}} shipped!",
                "example": {"body_text": [["A", "B"]]},
            }
        ]
        assert await client.edit_template(created.id, ACME_TOKEN, components=body)
        await eventually(lambda: world.templates[created.id].status == "APPROVED", what="re-approval")
        with pytest.raises(errors.InvalidParameter, match="once per 24 hours"):
            await client.edit_template(created.id, ACME_TOKEN, components=body)
        assert await client.delete_template(ACME_WABA, ACME_TOKEN, "order_update", hsm_id=created.id)
        assert await client.templates(ACME_WABA, ACME_TOKEN, name="order_update") == []
        with pytest.raises(errors.InvalidParameter, match="cannot be reused for 30 days"):
            await client.create_template(ACME_WABA, ACME_TOKEN, TEMPLATE)


@pytest.mark.parametrize(
    ("text_", "example"),
    [
        ("Hi {{1}}, order {{3}} shipped.", [["a", "b"]]),  # non-sequential
        ("Hi {{1}}{{2}} shipped.", [["a", "b"]]),  # adjacent
        ("Hi {{1}}, order {{2}} shipped.", None),  # no examples
    ],
)
async def test_review_rejects_bad_formats(harness: Harness, text_: str, example: Any) -> None:
    component: dict[str, Any] = {"type": "BODY", "text": text_}
    if example is not None:
        component["example"] = {"body_text": example}
    async with harness.client() as client:
        created = await client.create_template(ACME_WABA, ACME_TOKEN, {**TEMPLATE, "components": [component]})
    world = harness.emulator.world
    await eventually(lambda: world.templates[created.id].status == "REJECTED", what="rejection")
    assert world.templates[created.id].rejected_reason == "INVALID_FORMAT"


async def test_template_creation_is_refused_synchronously_for_structural_errors(harness: Harness) -> None:
    async with harness.client() as client:
        with pytest.raises(errors.InvalidParameter) as raised:
            await client.create_template(ACME_WABA, ACME_TOKEN, {**TEMPLATE, "name": "Bad-Name"})
        assert raised.value.subcode == 2388043
        leading = [{"type": "BODY", "text": "{{1}} is here", "example": {"body_text": [["x"]]}}]
        with pytest.raises(errors.InvalidParameter) as raised:
            await client.create_template(ACME_WABA, ACME_TOKEN, {**TEMPLATE, "components": leading})
        assert raised.value.subcode == 2388299


async def test_send_inside_the_window_and_mark_read(harness: Harness) -> None:
    inbound = (await harness.control("POST", "inbound", {"phone_number_id": ACME_SUPPORT, "from": "+" + CUSTOMER,
                                                          "text": "Hello"})).json()["id"]  # fmt: skip
    async with harness.client() as client:
        sent = await client.send_message(ACME_SUPPORT, ACME_TOKEN, text("Hi!", to="+1 (555) 123-4567"))
        assert sent.message_id.startswith("wamid.")
        assert sent.contacts[0].wa_id == CUSTOMER
        assert sent.contacts[0].input == "+1 (555) 123-4567"
        assert await client.mark_read(ACME_SUPPORT, ACME_TOKEN, inbound)
    message = harness.emulator.world.messages[sent.message_id]
    await eventually(lambda: message.statuses == ["sent", "delivered", "read"], what="statuses")


async def test_national_numbers_get_the_business_country_code(harness: Harness) -> None:
    async with harness.client() as client:
        sent = await client.send_message(GLOBEX_PHONE, GLOBEX_TOKEN, text("Hi", to="07700 900123"))
    assert sent.contacts[0].wa_id == "4407700900123"


async def test_free_form_outside_the_window_fails_asynchronously(harness: Harness) -> None:
    async with harness.client() as client:
        sent = await client.send_message(ACME_SUPPORT, ACME_TOKEN, text("Hi", to="15550009999"))
    message = harness.emulator.world.messages[sent.message_id]
    await eventually(lambda: message.statuses == ["failed"], what="the failed status")


async def test_free_form_outside_the_window_fails_synchronously_when_configured(harness: Harness) -> None:
    harness.emulator.settings.window_error_mode = "sync"
    async with harness.client() as client:
        with pytest.raises(errors.OutsideCustomerServiceWindow) as raised:
            await client.send_message(ACME_SUPPORT, ACME_TOKEN, text("Hi", to="15550009999"))
    assert raised.value.code == 131047


async def test_template_sends(harness: Harness) -> None:
    async with harness.client() as client:
        created = await client.create_template(ACME_WABA, ACME_TOKEN, TEMPLATE)
        template: dict[str, Any] = {"name": "order_update", "language": {"code": "en_US"}, "components": []}
        with pytest.raises(errors.TemplateError) as raised:
            await client.send_message(ACME_SUPPORT, ACME_TOKEN, {"to": CUSTOMER, "type": "template",
                                                                 "template": template})  # fmt: skip
        assert raised.value.code == 132001  # still PENDING
        await eventually(
            lambda: harness.emulator.world.templates[created.id].status == "APPROVED", what="approval"
        )
        with pytest.raises(errors.TemplateError) as raised:
            await client.send_message(ACME_SUPPORT, ACME_TOKEN, {"to": CUSTOMER, "type": "template",
                                                                 "template": template})  # fmt: skip
        assert raised.value.code == 132000
        template["components"] = [{"type": "body", "parameters": [{"type": "text", "text": "Ann"},
                                                                  {"type": "text", "text": "#7"}]}]  # fmt: skip
        sent = await client.send_message(ACME_SUPPORT, ACME_TOKEN, {"to": CUSTOMER, "type": "template",
                                                                    "template": template})  # fmt: skip
        assert sent.messages[0].message_status == "accepted"


async def test_pair_rate_limit(harness: Harness) -> None:
    harness.emulator.settings.limits.pair_burst = 2
    await harness.control(
        "POST", "inbound", {"phone_number_id": ACME_SUPPORT, "from": CUSTOMER, "text": "hi"}
    )
    async with harness.client() as client:
        for _ in range(2):
            await client.send_message(ACME_SUPPORT, ACME_TOKEN, text("again"))
        with pytest.raises(errors.PairRateLimited) as raised:
            await client.send_message(ACME_SUPPORT, ACME_TOKEN, text("again"))
    assert raised.value.code == 131056
    assert raised.value.retry_after is not None
    assert raised.value.retry_after > 0


async def test_number_throughput_limit(harness: Harness) -> None:
    harness.emulator.settings.limits.messages_per_second_per_number = 3
    async with harness.client() as client:
        for index in range(3):
            await client.send_message(ACME_SUPPORT, ACME_TOKEN, text("hi", to=f"1555000{index:04d}"))
        with pytest.raises(errors.RateLimited) as raised:
            await client.send_message(ACME_SUPPORT, ACME_TOKEN, text("hi", to="15550009990"))
    assert raised.value.code == 130429


async def test_management_rate_limit(harness: Harness) -> None:
    harness.emulator.settings.limits.management_calls_per_hour = 2
    async with harness.client() as client:
        await client.subscribed_apps(ACME_WABA, ACME_TOKEN)
        await client.subscribed_apps(ACME_WABA, ACME_TOKEN)
        with pytest.raises(errors.RateLimited) as raised:
            await client.subscribed_apps(ACME_WABA, ACME_TOKEN)
    assert raised.value.code == 80007


async def test_tokens_reach_only_their_own_wabas(harness: Harness) -> None:
    async with harness.client() as client:
        with pytest.raises(errors.PermissionDenied) as raised:
            await client.phone_numbers(GLOBEX_WABA, ACME_TOKEN)
        assert raised.value.code == 200
        with pytest.raises(errors.PermissionDenied):
            await client.send_message(GLOBEX_PHONE, ACME_TOKEN, text("hi"))
        with pytest.raises(errors.ObjectNotFound) as not_found:
            await client.phone_number("999999999999999", ACME_TOKEN)
        assert not_found.value.code == 100
        assert not_found.value.subcode == 33


async def test_invalid_revoked_and_expired_tokens(harness: Harness) -> None:
    short = (await harness.control("POST", "tokens", {"waba_ids": [ACME_WABA], "expires_in": 1})).json()
    async with harness.client() as client:
        with pytest.raises(errors.AuthenticationError) as raised:
            await client.phone_numbers(ACME_WABA, "EAAunknown")
        assert raised.value.code == 190
        assert "EAAunknown" not in str(raised.value)
        await harness.control("POST", "tokens/revoke", {"access_token": ACME_TOKEN})
        with pytest.raises(errors.AuthenticationError, match="invalidated"):
            await client.phone_numbers(ACME_WABA, ACME_TOKEN)
        token = harness.emulator.world.tokens[short["access_token"]]
        token.expires_at = token.issued_at - 1  # expiry in the past, without sleeping
        with pytest.raises(errors.AuthenticationError, match="expired"):
            await client.phone_numbers(ACME_WABA, short["access_token"])


async def test_transient_errors_are_retried_then_succeed(harness: Harness) -> None:
    await harness.control(
        "POST", "faults", {"path": "/phone_numbers", "count": 2, "code": 2, "http_status": 503}
    )
    async with harness.client(max_retries=3) as client:
        numbers = await client.phone_numbers(ACME_WABA, ACME_TOKEN)
    assert len(numbers) == 2


async def test_transient_errors_beyond_the_retry_budget_surface(harness: Harness) -> None:
    await harness.control("POST", "faults", {"path": "/phone_numbers", "count": 5, "code": 131016})
    async with harness.client(max_retries=2) as client:
        with pytest.raises(errors.TransientError) as raised:
            await client.phone_numbers(ACME_WABA, ACME_TOKEN)
    assert raised.value.code == 131016
    assert len(harness.emulator.sent_requests) == 0, "every attempt met the fault"


async def test_connection_reset_is_retried_for_reads(harness: Harness) -> None:
    await harness.control(
        "POST", "faults", {"method": "GET", "path": "/phone_numbers", "count": 1, "reset": True}
    )
    async with harness.client() as client:
        assert len(await client.phone_numbers(ACME_WABA, ACME_TOKEN)) == 2


async def test_a_send_is_never_retried_after_the_connection_dropped(harness: Harness) -> None:
    await harness.control(
        "POST", "faults", {"method": "POST", "path": "/messages", "count": 1, "reset": True}
    )
    async with harness.client() as client:
        with pytest.raises(errors.MetaUnreachable):
            await client.send_message(ACME_SUPPORT, ACME_TOKEN, text("once"))
        # No retry: a retried POST would have reached the emulator and been sent.
        assert harness.emulator.world.messages == {}
        sent = await client.send_message(ACME_SUPPORT, ACME_TOKEN, text("once more"))
    assert list(harness.emulator.world.messages) == [sent.message_id]


async def test_timeouts(harness: Harness) -> None:
    await harness.control("POST", "faults", {"path": "/phone_numbers", "count": 5, "latency_ms": 500})
    async with harness.client(timeout=0.1, max_retries=1) as client:
        with pytest.raises(errors.MetaUnreachable, match="timed out"):
            await client.phone_numbers(ACME_WABA, ACME_TOKEN)


async def test_held_calls_wait_until_the_faults_are_cleared(harness: Harness) -> None:
    await harness.control("POST", "faults", {"path": "/phone_numbers", "count": 2, "hold": True})
    async with harness.client() as client:
        calls = [asyncio.create_task(client.phone_numbers(ACME_WABA, ACME_TOKEN)) for _ in range(2)]

        async def both_held() -> bool:
            return bool((await harness.control("GET", "faults")).json()["data"][0]["held"] == 2)

        await eventually(both_held, what="both calls held at the emulator")
        assert not any(call.done() for call in calls)
        assert (await harness.control("DELETE", "faults")).json() == {"faults": 0}
        assert [len(numbers) for numbers in await asyncio.gather(*calls)] == [2, 2]
        assert (await harness.control("GET", "faults")).json() == {"data": []}


async def test_invalid_parameters(harness: Harness) -> None:
    async with harness.client() as client:
        with pytest.raises(errors.InvalidParameter) as raised:
            await client.send_message(
                ACME_SUPPORT, ACME_TOKEN, {"type": "text", "text": {"body": "no recipient"}}
            )
        assert raised.value.code == 131008
        with pytest.raises(errors.InvalidParameter) as raised:
            await client.send_message(
                ACME_SUPPORT, ACME_TOKEN, {"to": CUSTOMER, "type": "hologram", "hologram": {}}
            )
        assert raised.value.code == 100
        buttons = {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": str(i), "title": f"Option {i}"}} for i in range(4)]}}  # fmt: skip
        with pytest.raises(errors.InvalidParameter) as raised:
            await client.send_message(ACME_SUPPORT, ACME_TOKEN, {"to": CUSTOMER, "type": "interactive",
                                                                 "interactive": buttons})  # fmt: skip
        assert raised.value.code == 131009


async def test_unregistered_number_cannot_send(harness: Harness) -> None:
    async with harness.client() as client:
        with pytest.raises(errors.RegistrationError) as raised:
            await client.send_message(ACME_SALES, ACME_TOKEN, text("hi"))
    assert raised.value.code == 133010


def test_http_statuses_are_configurable() -> None:
    settings = EmulatorSettings(http_status_overrides={131056: 400}, limits=Limits())
    from wabaplane.meta.envelope import GraphError

    assert GraphError(code=131056, details="x").status(settings.http_status_overrides) == 400
    assert GraphError(code=131056, details="x").status({}) == 429


async def test_undeliverable_errors_are_classified(harness: Harness) -> None:
    await harness.control(
        "POST", "faults", {"method": "POST", "path": "/messages", "count": 1, "code": 131026}
    )
    async with harness.client() as client:
        with pytest.raises(errors.UndeliverableError) as raised:
            await client.send_message(ACME_SUPPORT, ACME_TOKEN, text("hi"))
    assert raised.value.code == 131026
    assert raised.value.fbtrace_id


async def test_template_creation_hourly_limit(harness: Harness) -> None:
    harness.emulator.settings.limits.template_creates_per_hour = 2
    async with harness.client() as client:
        for index in range(2):
            await client.create_template(ACME_WABA, ACME_TOKEN, {**TEMPLATE, "name": f"t{index}"})
        with pytest.raises(errors.RateLimited) as raised:
            await client.create_template(ACME_WABA, ACME_TOKEN, {**TEMPLATE, "name": "t2"})
    assert raised.value.code == 80007
    assert raised.value.retry_after is not None


def _has_three(statuses: list[str]) -> bool:
    return len(statuses) == 3


async def test_statuses_can_arrive_out_of_order(settings: EmulatorSettings, harness: Harness) -> None:
    harness.emulator.settings.shuffle_statuses = True
    harness.emulator.settings.status_delays = (0.01, 0.05, 0.1)
    await harness.control(
        "POST", "inbound", {"phone_number_id": ACME_SUPPORT, "from": CUSTOMER, "text": "hi"}
    )
    orders = set()
    async with harness.client() as client:
        for _ in range(12):
            sent = await client.send_message(ACME_SUPPORT, ACME_TOKEN, text("hi", to=CUSTOMER))
            statuses = harness.emulator.world.messages[sent.message_id].statuses
            await eventually(partial(_has_three, statuses), what="three statuses")
            orders.add(tuple(statuses))
    assert len(orders) > 1, "with shuffling on, the order of statuses varies"
    assert all(sorted(order) == ["delivered", "read", "sent"] for order in orders)
