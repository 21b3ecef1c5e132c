"""PhoneNumber and MessageTemplate lifecycles, restarts and management events, against the emulator."""

from __future__ import annotations

import copy
import time
from typing import Any

import httpx
import pytest
from kopf.testing import KopfRunner

from tests.conftest import Kube, free_port, wait_for
from tests.operator.conftest import (
    ACME_SALES,
    ACME_SUPPORT,
    ACME_TOKEN,
    ACME_WABA,
    GLOBEX_PHONE,
    Emulator,
    apply,
    condition,
    get,
    onboard_acme,
    phone,
    running_operator,
    secret,
    template,
    wait_condition,
)

pytestmark = [pytest.mark.cluster]


def test_phone_number_lifecycle(kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner) -> None:
    apply(
        kube,
        namespace,
        phone("acme-support", ACME_SUPPORT, pin_secret="acme-pin"),
        secret("acme-pin", pin="246810"),
    )
    wait_condition(kube, namespace, "phonenumber", "acme-support", "Ready", "False", "TenantNotReady")
    onboard_acme(kube, namespace)
    kube.run("wait", "-n", namespace, "--for=condition=Ready", "phonenumber/acme-support", "--timeout=30s")
    status = get(kube, namespace, "phonenumber", "acme-support")["status"]
    assert status["displayPhoneNumber"] == "+1 555-010-0001"
    assert status["verifiedName"] == "Acme Support"
    assert status["qualityRating"] == "GREEN"
    assert status["messagingLimit"] == "TIER_250"
    assert status["throughputLevel"] == "STANDARD"
    assert status["registered"] is True
    assert emulator.state()["phone_numbers"][ACME_SUPPORT]["registered"] is True
    table = kube.run("get", "-n", namespace, "phonenumbers").stdout
    assert "acme-support" in table
    assert "+1 555-010-0001" in table


def test_a_number_of_another_waba_is_refused(
    kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner
) -> None:
    onboard_acme(kube, namespace)
    apply(kube, namespace, phone("stolen", GLOBEX_PHONE))
    refused = wait_condition(kube, namespace, "phonenumber", "stolen", "Ready", "False", "NotInWaba")
    assert "registered" not in refused["status"] or refused["status"]["registered"] is None
    assert emulator.requests("POST", f"{GLOBEX_PHONE}/register") == []


def test_duplicate_claims_conflict_and_the_older_keeps_the_number(
    kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner
) -> None:
    onboard_acme(kube, namespace)
    apply(kube, namespace, phone("first", ACME_SALES))
    kube.run("wait", "-n", namespace, "--for=condition=Ready", "phonenumber/first", "--timeout=30s")
    apply(kube, namespace, phone("second", ACME_SALES))
    conflicted = wait_condition(kube, namespace, "phonenumber", "second", "Ready", "False", "NumberClaimed")
    message = next(c for c in conflicted["status"]["conditions"] if c["type"] == "Ready")["message"]
    assert "first" not in message
    assert namespace not in message
    assert get(kube, namespace, "phonenumber", "first")["status"]["conditions"][-1]["status"] == "True"
    # Conflict is abnormal-true, as the gateway reads it: True only on the later claim.
    holder = condition(get(kube, namespace, "phonenumber", "first"), "Conflict")
    loser = condition(conflicted, "Conflict")
    assert holder is not None
    assert loser is not None
    assert (holder["status"], holder["reason"]) == ("False", "Owned")
    assert (loser["status"], loser["reason"]) == ("True", "NumberClaimed")
    # Once the holder is gone the number passes to "second" at once (the resync here is an hour away).
    first_uid = get(kube, namespace, "phonenumber", "first")["metadata"]["uid"]
    kube.run("delete", "phonenumber", "-n", namespace, "first", "--wait=true", "--timeout=30s")
    taken = wait_condition(kube, namespace, "phonenumber", "second", "Ready", "True")
    assert (condition(taken, "Conflict") or {}).get("reason") == "Owned"
    assert taken["metadata"]["annotations"]["claims.wabaplane.io/released-by"] == first_uid


def test_a_wrong_pin_is_reported_and_not_retried(
    kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner
) -> None:
    onboard_acme(kube, namespace)
    httpx.post(f"{emulator.url}/v25.0/{ACME_SALES}", headers={"Authorization": f"Bearer {ACME_TOKEN}"},
               json={"pin": "111111"}).raise_for_status()  # fmt: skip
    apply(kube, namespace, phone("sales", ACME_SALES, pin_secret="pin"), secret("pin", pin="222222"))
    failed = wait_condition(kube, namespace, "phonenumber", "sales", "Ready", "False", "RegistrationFailed")
    assert "133005" in next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")["message"]
    kube.run("annotate", "-n", namespace, "phonenumber", "sales", "example.com/poke=1")
    wait_for(lambda: len(emulator.requests("GET", f"/{ACME_SALES}")) >= 2, what="another reconcile")
    assert len(emulator.requests("POST", f"{ACME_SALES}/register")) == 1, (
        "a refused registration is not repeated"
    )


def test_template_review_edit_and_deletion(
    kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner
) -> None:
    onboard_acme(kube, namespace)
    apply(kube, namespace, template("order_update"))
    wait_condition(kube, namespace, "messagetemplate", "order-update", "Ready", "False", "PendingReview")
    kube.run(
        "wait", "-n", namespace, "--for=condition=Ready", "messagetemplate/order-update", "--timeout=30s"
    )
    approved = get(kube, namespace, "messagetemplate", "order-update")["status"]
    template_id = approved["templateId"]
    assert approved["templateStatus"] == "APPROVED"
    assert approved["category"] == "UTILITY"
    meta = emulator.state()["templates"][template_id]
    assert meta["components"][0]["example"] == {"body_text": [["Ann"]]}, (
        "camelCase keys become Meta's snake_case"
    )

    apply(kube, namespace, template("order_update", "Hello {{1}}, your order is on its way."))
    wait_for(lambda: len(emulator.requests("POST", f"/{template_id}")) == 1, what="the edit")
    kube.run(
        "wait", "-n", namespace, "--for=condition=Ready", "messagetemplate/order-update", "--timeout=30s"
    )
    edited = get(kube, namespace, "messagetemplate", "order-update")
    wait_for(lambda: get(kube, namespace, "messagetemplate", "order-update")["status"].get("observedGeneration") == 2,
             what="generation 2 observed")  # fmt: skip
    assert edited["status"]["lastEditedAt"].endswith("Z")

    # A second edit within 24 hours is refused by Meta: reported, not retried.
    apply(kube, namespace, template("order_update", "Hello {{1}}, your parcel is on its way."))
    wait_condition(kube, namespace, "messagetemplate", "order-update", "Synced", "False", "EditNotAllowed")
    kube.run("annotate", "-n", namespace, "messagetemplate", "order-update", "example.com/poke=1")
    wait_for(lambda: len(emulator.requests("GET", f"/{template_id}")) >= 4, what="another reconcile")
    assert len(emulator.requests("POST", f"/{template_id}")) == 2

    kube.run("delete", "-n", namespace, "messagetemplate", "order-update", "--timeout=30s")
    assert template_id not in emulator.state()["templates"]
    deletions = emulator.requests("DELETE", "/message_templates")
    assert [d["params"] for d in deletions] == [{"name": "order_update", "hsm_id": template_id}]


def test_a_rejected_template(kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner) -> None:
    onboard_acme(kube, namespace)
    manifest = template("promo")
    # Admission accepts it; Meta's review rejects it (a duplicate body of another template).
    apply(kube, namespace, manifest, {**template("promo_copy"), "metadata": {"name": "promo-copy"}})
    rejected = wait_condition(kube, namespace, "messagetemplate", "promo-copy", "Ready", "False", "Rejected")
    assert rejected["status"]["templateStatus"] == "REJECTED"
    assert (
        "TAG_CONTENT_MISMATCH"
        in next(c for c in rejected["status"]["conditions"] if c["type"] == "Ready")["message"]
    )


def test_restart_mid_reconcile_does_nothing_twice_at_meta(
    kube: Kube, namespace: str, emulator: Emulator
) -> None:
    with running_operator(kube, namespace, emulator):
        onboard_acme(kube, namespace)
        apply(kube, namespace, template("restart_check"))
        wait_for(lambda: emulator.requests("POST", "/message_templates"), what="the template's creation")
    # The operator stopped right after creating; the status may not have recorded the id.
    with running_operator(kube, namespace, emulator):
        kube.run(
            "wait", "-n", namespace, "--for=condition=Ready", "messagetemplate/restart-check", "--timeout=30s"
        )
        kube.run("wait", "-n", namespace, "--for=condition=Ready", "tenant/acme", "--timeout=30s")
    assert len(emulator.requests("POST", "/message_templates")) == 1
    assert len(emulator.requests("POST", "/subscribed_apps")) == 1


def test_management_events_update_status_once(kube: Kube, namespace: str, emulator: Emulator) -> None:
    port = free_port()
    with running_operator(kube, namespace, emulator, WABAPLANE_MANAGEMENT_TOKEN="mgmt-secret",
                          WABAPLANE_MANAGEMENT_PORT=str(port)):  # fmt: skip
        onboard_acme(kube, namespace)
        apply(kube, namespace, template("events_check"), phone("acme-support", ACME_SUPPORT))
        kube.run(
            "wait", "-n", namespace, "--for=condition=Ready", "messagetemplate/events-check", "--timeout=30s"
        )
        kube.run(
            "wait", "-n", namespace, "--for=condition=Ready", "phonenumber/acme-support", "--timeout=30s"
        )
        template_id = get(kube, namespace, "messagetemplate", "events-check")["status"]["templateId"]
        url = f"http://127.0.0.1:{port}/v1/management-events"
        now = int(time.time())

        def send(body: dict[str, Any], token: str = "mgmt-secret") -> httpx.Response:  # noqa: S107
            return httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)

        paused: dict[str, Any] = {"object": "whatsapp_business_account", "entry": [{"id": ACME_WABA, "time": now, "changes": [
            {"field": "message_template_status_update", "value": {"event": "PAUSED", "message_template_id": int(template_id),
             "message_template_name": "events_check", "message_template_language": "en_US", "reason": "NONE"}}]}]}  # fmt: skip
        assert send(paused, token="wrong").status_code == 401
        assert send({"not": "an envelope"}).status_code == 400
        response = send(paused)
        assert response.json() == {
            "results": [{"field": "message_template_status_update", "outcome": "applied"}]
        }
        state = get(kube, namespace, "messagetemplate", "events-check")
        assert state["status"]["templateStatus"] == "PAUSED"
        assert next(c for c in state["status"]["conditions"] if c["type"] == "Ready")["reason"] == "Paused"

        older = copy.deepcopy(paused)
        older["entry"][0]["time"] = now - 60
        older["entry"][0]["changes"][0]["value"]["event"] = "APPROVED"
        assert send(older).json()["results"][0]["outcome"] == "stale"
        assert get(kube, namespace, "messagetemplate", "events-check")["status"]["templateStatus"] == "PAUSED"

        quality = {"object": "whatsapp_business_account", "entry": [{"id": ACME_WABA, "time": now + 1, "changes": [
            {"field": "phone_number_quality_update", "value": {"display_phone_number": "15550100001",
             "event": "THROUGHPUT_UPGRADE", "max_daily_conversations_per_business": "TIER_UNLIMITED"}}]}]}  # fmt: skip
        assert send(quality).json()["results"][0]["outcome"] == "applied"
        number = get(kube, namespace, "phonenumber", "acme-support")["status"]
        assert number["throughputLevel"] == "HIGH"
        assert number["messagingLimit"] == "TIER_UNLIMITED"
        unknown = {"object": "whatsapp_business_account", "entry": [{"id": "1", "time": now, "changes": [
            {"field": "message_template_status_update", "value": {"event": "APPROVED", "message_template_id": 42}}]}]}  # fmt: skip
        assert send(unknown).json()["results"][0]["outcome"] == "unknown"
