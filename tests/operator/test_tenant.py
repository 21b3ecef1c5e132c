"""Tenant lifecycles against the real API server and the emulator."""

from __future__ import annotations

import base64
import json

import pytest
from kopf.testing import KopfRunner

from tests.conftest import Kube, wait_for
from tests.operator.conftest import (
    ACME_BUSINESS,
    ACME_TOKEN,
    ACME_WABA,
    APP_ID,
    BROAD_TOKEN,
    Emulator,
    apply,
    condition,
    get,
    onboard_acme,
    secret,
    tenant,
    wait_condition,
)

pytestmark = [pytest.mark.cluster]


def secret_data(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    raw = json.loads(kube.run("get", "secret", "-n", namespace, name, "-o", "json").stdout)
    return {key: base64.b64decode(value).decode() for key, value in (raw.get("data") or {}).items()}


def test_tenant_lifecycle(
    kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner, caplog: pytest.LogCaptureFixture
) -> None:
    onboarded = onboard_acme(kube, namespace)
    status = onboarded["status"]
    assert status["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Conflict": "False", "CredentialsValid": "True", "WebhookSubscribed": "True", "SecretsProvisioned": "True",
        "Ready": "True",
    }  # fmt: skip
    assert status["tokenSecretName"] == "acme-meta-token"
    assert status["subscribed"] is True
    assert "tokenExpiresAt" not in status or status["tokenExpiresAt"] is None
    assert emulator.state()["wabas"][ACME_WABA]["subscribed_apps"] == [APP_ID]

    assert secret_data(kube, namespace, "acme-meta-token") == {"token": ACME_TOKEN}
    api_key = secret_data(kube, namespace, "acme-api-key")["api-key"]
    assert api_key.startswith("wpk_")
    webhook_secret = secret_data(kube, namespace, "acme-webhook-secret")["secret"]
    assert webhook_secret.startswith("whsec_")
    assert len(base64.b64decode(webhook_secret.removeprefix("whsec_"))) == 24
    for name in ("acme-meta-token", "acme-api-key", "acme-webhook-secret"):
        owners = json.loads(kube.run("get", "secret", "-n", namespace, name, "-o", "json").stdout)["metadata"]
        assert owners["ownerReferences"][0]["uid"] == onboarded["metadata"]["uid"]
        assert owners["labels"]["wabaplane.io/tenant"] == "acme"

    # Secrets never leak into status or Events.
    events = kube.run("get", "events", "-n", namespace, "-o", "json").stdout
    for value in (ACME_TOKEN, api_key, webhook_secret):
        assert value not in json.dumps(onboarded)
        assert value not in events
        assert value not in caplog.text
    assert "SecretCreated" in events
    assert "reconcile_tenant" in caplog.text, (
        "the operator's logs are captured, so the check above means something"
    )

    # A second reconcile changes nothing at Meta: one subscribe, ever.
    kube.run("annotate", "-n", namespace, "tenant", "acme", "example.com/touched=yes")
    wait_for(lambda: len(emulator.requests("GET", "/subscribed_apps")) >= 2, what="a second reconcile")
    assert len(emulator.requests("POST", "/subscribed_apps")) == 1

    kube.run("delete", "-n", namespace, "tenant", "acme", "--timeout=30s")
    assert emulator.state()["wabas"][ACME_WABA]["subscribed_apps"] == []
    # The garbage collector learns of new CRDs on its 30 s discovery resync: on a cluster whose CRDs
    # were just installed, the owned Secrets can wait that long before it follows their owner.
    wait_for(
        lambda: kube.run("get", "secret", "-n", namespace, "acme-api-key", check=False).returncode != 0,
        timeout=90,
        what="garbage collection of the owned Secrets",
    )


def test_rotation_keeps_the_previous_value_for_an_overlap(
    kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner
) -> None:
    onboard_acme(kube, namespace)
    first = secret_data(kube, namespace, "acme-api-key")["api-key"]
    kube.run("annotate", "-n", namespace, "tenant", "acme", "wabaplane.io/rotate=api-key")
    wait_for(lambda: secret_data(kube, namespace, "acme-api-key")["api-key"] != first, what="rotation")
    rotated = secret_data(kube, namespace, "acme-api-key")
    assert rotated["previous-api-key"] == first
    assert rotated["previous-expires-at"].endswith("Z")
    wait_for(lambda: "wabaplane.io/rotate" not in get(kube, namespace, "tenant", "acme")["metadata"].get(
        "annotations", {}), what="the rotate annotation to be removed")  # fmt: skip
    assert "previous-secret" not in secret_data(kube, namespace, "acme-webhook-secret")


def test_embedded_signup(kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner) -> None:
    code = emulator.control("POST", "signup-codes", {"business_id": ACME_BUSINESS, "waba_ids": [ACME_WABA],
                                                     "expires_in": 3600}).json()["code"]  # fmt: skip
    manifest = tenant(token_secret="unused")
    manifest["spec"]["credentials"] = {
        "embeddedSignup": {"codeSecretRef": {"name": "acme-signup", "key": "code"}}
    }
    apply(kube, namespace, secret("acme-signup", code=code), manifest)
    ready = wait_condition(kube, namespace, "tenant", "acme", "Ready", "True")
    assert secret_data(kube, namespace, "acme-signup")["code"] == "", "a used code is emptied"
    token = secret_data(kube, namespace, "acme-meta-token")["token"]
    assert token.startswith("EAA")
    assert ready["status"]["tokenExpiresAt"].endswith("Z")
    assert len(emulator.requests("GET", "/oauth/access_token")) == 1


def test_a_token_that_reaches_other_wabas_is_refused(
    kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner
) -> None:
    apply(kube, namespace, secret("acme-token", token=BROAD_TOKEN), tenant())
    refused = wait_condition(kube, namespace, "tenant", "acme", "Ready", "False", "TokenScopeTooBroad")
    message = next(c for c in refused["status"]["conditions"] if c["type"] == "Ready")["message"]
    assert "1 other WABA" in message
    assert "103344556677889" not in message, "the message must not name another business's WABA"
    assert emulator.requests("POST", "/subscribed_apps") == []
    manifest = tenant()
    manifest["spec"]["credentials"]["allowMultiWabaToken"] = True
    apply(kube, namespace, manifest)
    wait_condition(kube, namespace, "tenant", "acme", "Ready", "True")


def test_a_second_tenant_for_the_same_waba_is_refused_and_gets_nothing(
    kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner
) -> None:
    refused_holder_uid = onboard_acme(kube, namespace)["metadata"]["uid"]
    calls_before = len(emulator.requests())
    apply(kube, namespace, tenant("copycat"))
    refused = wait_condition(kube, namespace, "tenant", "copycat", "Ready", "False", "WabaClaimed")
    conflict = next(c for c in refused["status"]["conditions"] if c["type"] == "Conflict")
    assert (conflict["status"], conflict["reason"]) == ("True", "WabaClaimed")
    assert "acme" not in conflict["message"], "status must not name the Tenant that holds the WABA"
    holder = next(
        c for c in get(kube, namespace, "tenant", "acme")["status"]["conditions"] if c["type"] == "Conflict"
    )
    assert (holder["status"], holder["reason"]) == ("False", "Owned")
    # The refused Tenant made no call to Meta and got no API key or webhook secret.
    assert len(emulator.requests()) == calls_before
    missing = kube.run("get", "secret", "-n", namespace, "copycat-api-key", "copycat-webhook-secret",
                       "--ignore-not-found", "-o", "name")  # fmt: skip
    assert missing.stdout.strip() == ""
    # Once the holder is gone the WABA passes to copycat at once (the resync here is an hour away).
    kube.run("delete", "tenant", "-n", namespace, "acme", "--wait=true", "--timeout=30s")
    taken = wait_condition(kube, namespace, "tenant", "copycat", "Ready", "True")
    assert (condition(taken, "Conflict") or {}).get("reason") == "Owned"
    assert taken["metadata"]["annotations"]["claims.wabaplane.io/released-by"] == refused_holder_uid
    assert emulator.state()["wabas"][ACME_WABA]["subscribed_apps"] == [APP_ID], "copycat subscribed it again"


def test_expiring_tokens_are_flagged(
    kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner
) -> None:
    short = emulator.control("POST", "tokens", {"waba_ids": [ACME_WABA], "expires_in": 3600}).json()[
        "access_token"
    ]
    apply(kube, namespace, secret("acme-token", token=short), tenant())
    ready = wait_condition(kube, namespace, "tenant", "acme", "TokenExpiring", "True", "TokenExpiresSoon")
    assert ready["status"]["tokenExpiresAt"].endswith("Z")
    events = kube.run("get", "events", "-n", namespace, "--field-selector", "reason=TokenExpiresSoon").stdout
    assert "Warning" in events


def test_meta_failures_give_honest_conditions_and_retries(
    kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner
) -> None:
    emulator.control("POST", "faults", {"path": "/debug_token", "count": 12, "code": 2, "http_status": 503})
    apply(kube, namespace, secret("acme-token", token=ACME_TOKEN), tenant())
    wait_condition(kube, namespace, "tenant", "acme", "Ready", "False", "MetaUnavailable")
    wait_condition(kube, namespace, "tenant", "acme", "Ready", "True", timeout=60)


def test_a_revoked_token_is_reported(
    kube: Kube, namespace: str, emulator: Emulator, operator: KopfRunner
) -> None:
    short = emulator.control("POST", "tokens", {"waba_ids": [ACME_WABA]}).json()["access_token"]
    emulator.control("POST", "tokens/revoke", {"access_token": short})
    apply(kube, namespace, secret("acme-token", token=short), tenant())
    wait_condition(kube, namespace, "tenant", "acme", "CredentialsValid", "False", "TokenInvalid")
