"""Splitting Meta's envelope into units, and every routing rule (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.conftest import envelope, make_view, number_obj, tenant_obj, text_message
from wabaplane.gateway.routing import route
from wabaplane.gateway.units import MalformedEnvelope, Unit, split

ACME_WABA, GLOBEX_WABA = "102290129340398", "103344556677889"
ACME_PHONE, GLOBEX_PHONE = "106540352242922", "107788990011223"
PARTNER_BUSINESS = "909090909090909"


def snapshot(**tenant_overrides: Any) -> Any:
    tenants = [
        tenant_obj("team-a", "acme", ACME_WABA, "https://acme.example/hook",
                   fields=["messages", "message_template_status_update", "phone_number_quality_update",
                           "account_update", "security"], **tenant_overrides),
        tenant_obj("team-b", "globex", GLOBEX_WABA, "https://globex.example/hook"),
    ]  # fmt: skip
    numbers = [
        number_obj("team-a", "support", "acme", ACME_PHONE, "+1 555-010-0001"),
        number_obj("team-b", "main", "globex", GLOBEX_PHONE, "+44 20 7946 0958"),
    ]
    return make_view(tenants, numbers, []).snapshot


def only(units: list[Unit]) -> Unit:
    assert len(units) == 1
    return units[0]


def change(waba: str, field: str, value: dict[str, Any], time: int | None = 1800000000) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": waba, "changes": [{"field": field, "value": value}]}
    if time is not None:
        entry["time"] = time
    return entry


def test_a_batch_splits_into_one_unit_per_message_and_status_with_its_own_contact() -> None:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100001", "phone_number_id": ACME_PHONE},
        "contacts": [{"wa_id": "111", "profile": {"name": "A"}}, {"wa_id": "222", "profile": {"name": "B"}}],
        "messages": [{"from": "111", "id": "wamid.A", "type": "text", "text": {"body": "a"}, "timestamp": "1"},
                     {"from": "222", "id": "wamid.B", "type": "text", "text": {"body": "b"}, "timestamp": "2"}],
        "statuses": [{"id": "wamid.S", "status": "read", "recipient_id": "222", "timestamp": "3"}],
    }  # fmt: skip
    units = split(
        envelope(
            change(ACME_WABA, "messages", value, time=None),
            text_message(GLOBEX_PHONE, GLOBEX_WABA, "wamid.G"),
        )
    )
    assert [u.dedupe_key for u in units] == ["message:wamid.A", "message:wamid.B", "status:wamid.S:read",
                                             "message:wamid.G"]  # fmt: skip
    first, second, status = units[0].value, units[1].value, units[2].value
    assert first["contacts"] == [value["contacts"][0]]
    assert first["messages"] == [value["messages"][0]]
    assert second["contacts"] == [value["contacts"][1]]
    assert status["statuses"] == value["statuses"]
    assert status["contacts"] == [value["contacts"][1]]
    assert all(u.value["metadata"] == value["metadata"] for u in units[:3])


def test_status_keys_distinguish_each_status_of_a_message() -> None:
    statuses = [
        {"id": "wamid.X", "status": s, "recipient_id": "1", "timestamp": "1"} for s in ("sent", "delivered")
    ]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": ACME_PHONE},
        "statuses": statuses,
    }
    assert [u.dedupe_key for u in split(envelope(change(ACME_WABA, "messages", value)))] == [
        "status:wamid.X:sent", "status:wamid.X:delivered"]  # fmt: skip


def test_system_errors_stay_one_unit_and_identical_changes_share_a_key() -> None:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": ACME_PHONE},
             "errors": [{"code": 130429, "title": "Rate limit hit"}]}  # fmt: skip
    first, second = split(
        envelope(change(ACME_WABA, "messages", value), change(ACME_WABA, "messages", value))
    )
    assert first.value["errors"] == value["errors"]
    assert first.dedupe_key == second.dedupe_key


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ({"object": "page", "entry": []}, '"object" must be "whatsapp_business_account"'),
        ({"object": "whatsapp_business_account"}, '"entry" must be an array'),
        (
            {"object": "whatsapp_business_account", "entry": [{"id": "1"}]},
            "entry[0] must be an object with a changes",
        ),
        ({"object": "whatsapp_business_account", "entry": [{"id": None, "changes": []}]}, "entry[0].id"),
    ],
)
def test_bodies_that_are_not_meta_envelopes_are_refused_with_the_reason(body: Any, message: str) -> None:
    with pytest.raises(MalformedEnvelope) as refused:
        split(body)
    assert message in str(refused.value)


def test_a_malformed_change_inside_a_valid_envelope_is_kept_as_unroutable() -> None:
    unit = only(split(envelope({"id": ACME_WABA, "changes": [{"field": "messages", "value": "oops"}]})))
    decision = route(unit, snapshot(), operator=True)
    assert not decision.routed
    assert "not an object" in (decision.reason or "")


def test_messages_route_by_phone_number_id() -> None:
    acme = route(
        only(split(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.1")))), snapshot(), operator=True
    )
    globex = route(
        only(split(envelope(text_message(GLOBEX_PHONE, GLOBEX_WABA, "wamid.2")))), snapshot(), operator=True
    )
    assert (acme.namespace, acme.tenant, acme.targets) == ("team-a", "acme", ("tenant",))
    assert (globex.namespace, globex.tenant) == ("team-b", "globex")


@pytest.mark.parametrize(
    ("numbers", "reason"),
    [
        (
            [number_obj("team-a", "support", "acme", ACME_PHONE, "15550100001", ready=False)],
            "no Ready PhoneNumber",
        ),
        (
            [number_obj("team-a", "support", "acme", ACME_PHONE, "15550100001", conflict=True)],
            "no Ready PhoneNumber",
        ),
        (
            [number_obj("team-a", "support", "ghost", ACME_PHONE, "15550100001")],
            "names a Tenant that does not exist",
        ),
        ([], "no Ready PhoneNumber"),
    ],
)
def test_numbers_that_are_not_ready_or_in_conflict_route_nowhere(
    numbers: list[dict[str, Any]], reason: str
) -> None:
    view = make_view([tenant_obj("team-a", "acme", ACME_WABA, "https://acme.example/hook")], numbers, [])
    decision = route(
        only(split(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.1")))), view.snapshot, operator=True
    )
    assert not decision.routed
    assert reason in (decision.reason or "")


def test_a_number_arriving_under_another_waba_routes_nowhere() -> None:
    decision = route(
        only(split(envelope(text_message(ACME_PHONE, GLOBEX_WABA, "wamid.1")))), snapshot(), operator=True
    )
    assert not decision.routed
    assert "not its Tenant's WABA" in (decision.reason or "")


def test_template_events_route_by_waba_to_the_tenant_that_asked_and_to_the_operator() -> None:
    value = {"event": "APPROVED", "message_template_id": 123, "message_template_name": "welcome",
             "message_template_language": "en_US", "reason": "NONE"}  # fmt: skip
    acme = route(only(split(envelope(change(ACME_WABA, "message_template_status_update", value)))), snapshot(),
                 operator=True)  # fmt: skip
    assert (acme.tenant, acme.targets) == ("acme", ("tenant", "operator"))
    globex = route(only(split(envelope(change(GLOBEX_WABA, "message_template_status_update", value)))), snapshot(),
                   operator=True)  # fmt: skip
    assert (globex.tenant, globex.targets) == ("globex", ("operator",))
    without_operator = route(only(split(envelope(change(GLOBEX_WABA, "message_template_status_update", value)))),
                             snapshot(), operator=False)  # fmt: skip
    assert (without_operator.tenant, without_operator.targets) == ("globex", ())


def test_a_waba_routes_only_to_a_tenant_whose_ownership_is_proven() -> None:
    value = {"decision": "APPROVED"}
    decision = route(only(split(envelope(change(ACME_WABA, "account_review_update", value)))),
                     snapshot(proven=False), operator=True)  # fmt: skip
    assert not decision.routed
    assert f"no Tenant with proven ownership of WABA {ACME_WABA}" == decision.reason


def test_two_tenants_claiming_one_waba_route_to_the_older() -> None:
    view = make_view([
        tenant_obj("team-z", "late", ACME_WABA, "https://z.example", created="2026-03-01T00:00:00Z"),
        tenant_obj("team-a", "acme", ACME_WABA, "https://a.example", created="2026-02-01T00:00:00Z"),
    ], [], [])  # fmt: skip
    decision = route(only(split(envelope(change(ACME_WABA, "account_review_update", {"decision": "APPROVED"})))),
                     view.snapshot, operator=False)  # fmt: skip
    assert (decision.namespace, decision.tenant) == ("team-a", "acme")


def test_a_tenant_in_conflict_over_its_waba_owns_nothing() -> None:
    # The operator marks the later claim Conflict=True; even with valid credentials (e.g. written
    # before the conflict arose) it receives none of the WABA's events.
    holder = tenant_obj("team-a", "acme", ACME_WABA, "https://a.example", created="2026-03-01T00:00:00Z")
    holder["status"]["conditions"].append({"type": "Conflict", "status": "True"})
    view = make_view([holder], [], [])
    decision = route(only(split(envelope(change(ACME_WABA, "account_review_update", {"decision": "APPROVED"})))),
                     view.snapshot, operator=False)  # fmt: skip
    assert not decision.routed
    assert decision.reason == f"no Tenant with proven ownership of WABA {ACME_WABA}"


@pytest.mark.parametrize("field", ["phone_number_quality_update", "phone_number_name_update", "security"])
def test_display_number_fields_route_within_the_entry_waba(field: str) -> None:
    value = {"display_phone_number": "15550100001", "event": "FLAGGED", "decision": "APPROVED"}
    acme = route(only(split(envelope(change(ACME_WABA, field, value)))), snapshot(), operator=True)
    assert acme.tenant == "acme"
    # The same digits under another WABA are not that WABA's number.
    other = route(only(split(envelope(change(GLOBEX_WABA, field, value)))), snapshot(), operator=True)
    assert not other.routed
    assert "no Ready PhoneNumber with display number 15550100001" in (other.reason or "")


def test_partner_account_updates_route_by_the_customer_waba_not_entry_id() -> None:
    value = {"event": "PARTNER_ADDED", "waba_info": {"waba_id": ACME_WABA, "owner_business_id": "500123"}}
    decision = route(
        only(split(envelope(change(PARTNER_BUSINESS, "account_update", value)))), snapshot(), operator=True
    )
    assert (decision.tenant, decision.targets) == ("acme", ("tenant", "operator"))
    unknown = {"event": "PARTNER_ADDED", "waba_info": {"waba_id": "111"}}
    assert not route(only(split(envelope(change(PARTNER_BUSINESS, "account_update", unknown)))), snapshot(),
                     operator=True).routed  # fmt: skip


def test_a_tenant_without_a_webhook_or_the_field_gets_no_delivery_but_owns_the_unit() -> None:
    view = make_view([tenant_obj("team-a", "acme", ACME_WABA, None)],
                     [number_obj("team-a", "support", "acme", ACME_PHONE, "15550100001")], [])  # fmt: skip
    decision = route(
        only(split(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.1")))), view.snapshot, operator=True
    )
    assert (decision.tenant, decision.targets) == ("acme", ())


@pytest.mark.parametrize("value", [{}, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.x"}]}])
def test_a_messages_change_without_its_number_never_routes_by_waba(value: dict[str, Any]) -> None:
    """Found by the fuzzer: the WABA alone must not route a messages change."""
    decision = route(only(split(envelope(change(ACME_WABA, "messages", value)))), snapshot(), operator=True)
    assert not decision.routed
    assert decision.reason == "a messages change without metadata.phone_number_id"
