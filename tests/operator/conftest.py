"""The operator in-process (KopfRunner) against the real API server and a real emulator process."""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kopf.testing import KopfRunner

from tests.conftest import Kube, emulator_process, wait_for

WABAPLANE = str(Path(sys.executable).parent / "wabaplane")
APP_ID = "1234567890123456"
APP_SECRET = "operator-test-app-secret"
ACME_WABA = "102290129340398"
ACME_BUSINESS = "500123456789012"
ACME_SUPPORT = "106540352242922"
ACME_SALES = "106540352242923"
GLOBEX_WABA = "103344556677889"
GLOBEX_PHONE = "107788990011223"
ACME_TOKEN = "EAAoperator-test-acme-token"
BROAD_TOKEN = "EAAoperator-test-broad-token"

SEED = {
    "businesses": [
        {"id": ACME_BUSINESS, "name": "Acme", "wabas": [{"id": ACME_WABA, "name": "Acme WABA", "phone_numbers": [
            {"id": ACME_SUPPORT, "display_phone_number": "+1 555-010-0001", "verified_name": "Acme Support"},
            {"id": ACME_SALES, "display_phone_number": "+1 555-010-0002", "verified_name": "Acme Sales"},
        ]}]},
        {"id": "500987654321098", "name": "Globex", "wabas": [{"id": GLOBEX_WABA, "name": "Globex WABA",
            "phone_numbers": [{"id": GLOBEX_PHONE, "display_phone_number": "+44 20 7946 0958",
                               "verified_name": "Globex", "country_code": "44"}]}]},
    ],
    "tokens": [
        {"value": ACME_TOKEN, "wabas": [ACME_WABA]},
        {"value": BROAD_TOKEN, "wabas": [ACME_WABA, GLOBEX_WABA]},
    ],
}  # fmt: skip


@dataclass
class Emulator:
    url: str

    def control(self, method: str, path: str, body: Any = None) -> httpx.Response:
        response = httpx.request(method, f"{self.url}/_emulator/{path}", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response

    def requests(self, method: str | None = None, path_suffix: str = "") -> list[dict[str, Any]]:
        found = self.control("GET", "requests").json()["data"]
        return [
            r for r in found if (method is None or r["method"] == method) and r["path"].endswith(path_suffix)
        ]

    def state(self) -> dict[str, Any]:
        return dict(self.control("GET", "state").json())

    def graph(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/v25.0/{path}", headers={"Authorization": f"Bearer {token}"},
                             timeout=10, **kwargs)  # fmt: skip


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    args = ("--app-id", APP_ID, "--app-secret", APP_SECRET, "--review-seconds", "0.5")
    with emulator_process(*args) as running:
        emulator = Emulator(running.url)
        emulator.control("POST", "seed", SEED)
        yield emulator


OPERATOR_ENV = {
    "WABAPLANE_META_APP_ID": APP_ID,
    "WABAPLANE_META_APP_SECRET": APP_SECRET,
    "WABAPLANE_RETRY_DELAY": "1",
    "WABAPLANE_PENDING_POLL_INTERVAL": "1",
    "WABAPLANE_RESYNC_INTERVAL": "3600",
}


@contextmanager
def running_operator(kube: Kube, namespace: str, emulator: Emulator, **env: str) -> Iterator[KopfRunner]:
    """The operator watching one namespace, in this process, with the emulator as Meta."""
    values = {**OPERATOR_ENV, "WABAPLANE_GRAPH_URL": emulator.url, "KUBECONFIG": str(kube.kubeconfig),
              "WABAPLANE_NAMESPACES": namespace, **env}  # fmt: skip
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        args = ["run", "--standalone", "--namespace", namespace, "-m", "wabaplane.operator.handlers"]
        with KopfRunner(args, timeout=60) as runner:
            yield runner
        # Collect the stopped operator's loop now, so that anything it left open (a session, a
        # socket) is reported, as an error, in the test that ran it.
        gc.collect()
        assert runner.exception is None, runner.output
        assert runner.exit_code == 0, runner.output
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def operator(kube: Kube, namespace: str, emulator: Emulator) -> Iterator[KopfRunner]:
    with running_operator(kube, namespace, emulator) as runner:
        yield runner


def apply(kube: Kube, namespace: str, *manifests: dict[str, Any]) -> None:
    kube.run("apply", "-n", namespace, "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                     "items": list(manifests)}))  # fmt: skip


def get(kube: Kube, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(kube.run("get", "-n", namespace, kind, name, "-o", "json").stdout))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def wait_condition(
    kube: Kube, namespace: str, kind: str, name: str, type_: str, status: str, reason: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:  # fmt: skip
    """Wait until a condition has the status (and reason); return the object."""
    found: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal found
        found = get(kube, namespace, kind, name)
        current = condition(found, type_)
        return (
            current is not None
            and current["status"] == status
            and (reason is None or current["reason"] == reason)
        )

    wait_for(reached, timeout=timeout, what=f"{kind}/{name} {type_}={status} {reason or ''}")
    return found


def secret(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def tenant(
    name: str = "acme",
    waba: str = ACME_WABA,
    token_secret: str = "acme-token",  # noqa: S107 - a Secret's name
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "wabaplane.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"displayName": name.title(), "wabaId": waba,
                 "credentials": {"tokenSecretRef": {"name": token_secret, "key": "token"}}, **spec},
    }  # fmt: skip


def phone(
    name: str, phone_id: str, tenant_name: str = "acme", pin_secret: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"tenantRef": {"name": tenant_name}, "phoneNumberId": phone_id}
    if pin_secret:
        spec["registration"] = {"pinSecretRef": {"name": pin_secret, "key": "pin"}}
    return {
        "apiVersion": "wabaplane.io/v1alpha1",
        "kind": "PhoneNumber",
        "metadata": {"name": name},
        "spec": spec,
    }


def template(name: str, body_text: str = "Hi {{1}}, your order has shipped.", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "wabaplane.io/v1alpha1",
        "kind": "MessageTemplate",
        "metadata": {"name": name.replace("_", "-")},
        "spec": {"tenantRef": {"name": "acme"}, "name": name, "language": "en_US", "category": "UTILITY",
                 "components": [{"type": "BODY", "text": body_text, "example": {"bodyText": [["Ann"]]}}], **spec},
    }  # fmt: skip


def onboard_acme(kube: Kube, namespace: str) -> dict[str, Any]:
    apply(kube, namespace, secret("acme-token", token=ACME_TOKEN), tenant())
    kube.run("wait", "-n", namespace, "--for=condition=Ready", "tenant/acme", "--timeout=30s")
    return get(kube, namespace, "tenant", "acme")


Waiter = Callable[..., dict[str, Any]]
