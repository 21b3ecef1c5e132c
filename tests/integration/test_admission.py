"""Admission against a real kube-apiserver: the schema and CEL rules refuse what Meta would refuse."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLES_DIR, Kube

pytestmark = pytest.mark.cluster

Manifest = dict[str, Any]


def example(name: str) -> Manifest:
    """A manifest from examples/ by metadata.name."""
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document["metadata"]["name"] == name:
                return copy.deepcopy(document)
    raise KeyError(name)


def apply(kube: Kube, namespace: str, manifest: Manifest) -> tuple[int, str]:
    result = kube.run("apply", "-n", namespace, "-f", "-", stdin=json.dumps(manifest), check=False)
    return result.returncode, result.stderr


def test_every_example_is_accepted(kube: Kube, namespace: str) -> None:
    result = kube.run("apply", "-n", namespace, "-f", str(EXAMPLES_DIR))
    assert "tenant.wabaplane.io/acme created" in result.stdout
    listed = json.loads(kube.run("get", "-n", namespace, "wabaplane", "-o", "json").stdout)
    kinds = sorted(item["kind"] for item in listed["items"])
    assert kinds == ["MessageTemplate"] * 4 + ["PhoneNumber"] * 3 + ["Tenant"] * 2


def test_defaults_are_applied(kube: Kube, namespace: str) -> None:
    tenant = example("acme")
    del tenant["spec"]["quotas"]
    del tenant["spec"]["webhook"]["fields"]
    assert apply(kube, namespace, tenant)[0] == 0
    stored = json.loads(kube.run("get", "-n", namespace, "tenant", "acme", "-o", "json").stdout)["spec"]
    assert stored["quotas"] == {"messagesPerSecond": 20, "burst": 40, "maxInFlightDeliveries": 10}
    assert stored["webhook"]["fields"] == ["messages"]
    assert stored["suspended"] is False
    template = example("acme-order-update-en")
    assert apply(kube, namespace, template)[0] == 0
    stored = json.loads(kube.run("get", "-n", namespace, "wtpl", "acme-order-update-en", "-o", "json").stdout)
    assert stored["spec"]["parameterFormat"] == "POSITIONAL"


def _set(path: str, value: Any) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        *parents, last = path.split(".")
        node: Any = manifest
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is DELETE:
            del node[int(last) if last.isdigit() else last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


DELETE = object()
ORDER = "acme-order-update-en"
NAMED = "acme-appointment-reminder-pt"
SALE = "acme-spring-sale-en"

INVALID_CASES: list[tuple[str, str, Callable[[Manifest], None], str]] = [
    # Tenant
    ("waba-id-not-digits", "acme", _set("spec.wabaId", "waba-1"), 'spec.wabaId: Invalid value: "waba-1"'),
    (
        "both-credentials",
        "acme",
        _set("spec.credentials.tokenSecretRef", {"name": "token", "key": "token"}),
        "credentials must set exactly one of tokenSecretRef or embeddedSignup.codeSecretRef",
    ),
    (
        "no-credentials",
        "acme",
        _set("spec.credentials", {}),
        "credentials must set exactly one of tokenSecretRef or embeddedSignup.codeSecretRef",
    ),
    (
        "unknown-webhook-field",
        "acme",
        _set("spec.webhook.fields", ["mesages"]),
        'Unsupported value: "mesages"',
    ),
    ("webhook-not-a-url", "acme", _set("spec.webhook.url", "hooks.acme.example"), "spec.webhook.url"),
    ("zero-rate", "acme", _set("spec.quotas.messagesPerSecond", 0), "spec.quotas.messagesPerSecond"),
    (
        "burst-below-rate",
        "acme",
        _set("spec.quotas.burst", 4),
        "quotas.burst must be at least quotas.messagesPerSecond",
    ),
    ("missing-display-name", "acme", _set("spec.displayName", DELETE), "spec.displayName: Required value"),
    # PhoneNumber
    (
        "phone-id-not-digits",
        "acme-support",
        _set("spec.phoneNumberId", "+1 555 0100"),
        "spec.phoneNumberId: Invalid value",
    ),
    ("missing-tenant-ref", "acme-support", _set("spec.tenantRef", DELETE), "spec.tenantRef: Required value"),
    # MessageTemplate: names and enums
    ("template-name-uppercase", ORDER, _set("spec.name", "Order_Update"), "spec.name: Invalid value"),
    ("template-name-dash", ORDER, _set("spec.name", "order-update"), "spec.name: Invalid value"),
    ("unknown-category", ORDER, _set("spec.category", "PROMOTIONAL"), 'Unsupported value: "PROMOTIONAL"'),
    # MessageTemplate: lengths
    (
        "header-too-long",
        ORDER,
        _set("spec.components.0.text", "Order {{1}} " + "x" * 60),
        "HEADER text must be at most 60 characters",
    ),
    (
        "body-too-long",
        ORDER,
        _set("spec.components.1.text", "Hi {{1}}, {{2}} {{3}} " + "x" * 1010),
        "spec.components[1].text: Too long: may not be more than 1024",
    ),
    (
        "footer-too-long",
        ORDER,
        _set("spec.components.2.text", "f" * 61),
        "FOOTER text must be at most 60 characters",
    ),
    (
        "button-text-too-long",
        ORDER,
        _set("spec.components.3.buttons.1.text", "Call our friendly support team"),
        "spec.components[3].buttons[1].text: Too long: may not be more than 25",
    ),
    # MessageTemplate: buttons
    (
        "eleven-buttons",
        SALE,
        _set(
            "spec.components.2.buttons", [{"type": "QUICK_REPLY", "text": f"Option {i}"} for i in range(11)]
        ),
        "spec.components[2].buttons: Too many: 11: must have at most 10 items",
    ),
    (
        "three-url-buttons",
        SALE,
        _set(
            "spec.components.2.buttons",
            [{"type": "URL", "text": f"Link {i}", "url": f"https://acme.example/{i}"} for i in range(3)],
        ),
        "at most 2 URL buttons are allowed",
    ),
    (
        "two-phone-buttons",
        SALE,
        _set(
            "spec.components.2.buttons",
            [{"type": "PHONE_NUMBER", "text": f"Call {i}", "phoneNumber": "+15550100"} for i in range(2)],
        ),
        "at most 1 PHONE_NUMBER button is allowed",
    ),
    (
        "quick-replies-not-grouped",
        SALE,
        _set(
            "spec.components.2.buttons",
            [
                {"type": "QUICK_REPLY", "text": "Yes"},
                {"type": "URL", "text": "Shop", "url": "https://acme.example"},
                {"type": "QUICK_REPLY", "text": "No"},
            ],
        ),
        "QUICK_REPLY buttons must be grouped together",
    ),
    (
        "url-placeholder-not-at-end",
        ORDER,
        _set("spec.components.3.buttons.0.url", "https://acme.example/{{1}}/track"),
        "a URL button may hold one placeholder, {{1}}, only at the end of the url",
    ),
    (
        "url-placeholder-without-example",
        ORDER,
        _set("spec.components.3.buttons.0.example", DELETE),
        "a URL button with a {{1}} placeholder needs an example",
    ),
    (
        "url-button-without-url",
        ORDER,
        _set("spec.components.3.buttons.0.url", DELETE),
        "URL buttons need url",
    ),
    # MessageTemplate: structure
    (
        "no-body",
        ORDER,
        _set("spec.components", [{"type": "FOOTER", "text": "Thanks"}]),
        "components must hold exactly one BODY",
    ),
    (
        "two-bodies",
        NAMED,
        _set("spec.components.1", {"type": "BODY", "text": "Hello there, friend."}),
        "components must hold exactly one BODY",
    ),
    (
        "header-without-format",
        ORDER,
        _set("spec.components.0.format", DELETE),
        "a HEADER needs format",
    ),
    (
        "media-header-without-sample",
        SALE,
        _set("spec.components.0.example", DELETE),
        "an IMAGE, VIDEO or DOCUMENT header needs example.headerHandle",
    ),
    # MessageTemplate: placeholders and examples
    (
        "positional-gap",
        ORDER,
        _set("spec.components.1.text", "Hi {{1}}, your order {{2}} has shipped and arrives {{4}}."),
        "POSITIONAL placeholders must be numbered {{1}}, {{2}}, ... without gaps, each used once",
    ),
    (
        "positional-starts-at-two",
        ORDER,
        _set("spec.components.0.text", "Order {{2}}"),
        "POSITIONAL placeholders must be numbered {{1}}, {{2}}, ... without gaps, each used once",
    ),
    (
        "positional-repeated",
        ORDER,
        _set("spec.components.1.text", "Hi {{1}}, dear {{1}}, your order {{2}} arrives {{3}}."),
        "POSITIONAL placeholders must be numbered {{1}}, {{2}}, ... without gaps, each used once",
    ),
    (
        "positional-zero",
        ORDER,
        _set("spec.components.0.text", "Order {{0}}"),
        "POSITIONAL placeholders must be numbers from 1 to 99",
    ),
    (
        "named-placeholder-in-positional-template",
        ORDER,
        _set("spec.components.1.text", "Hi {{name}}, your order {{2}} has shipped on {{3}}."),
        "POSITIONAL placeholders must be numbers from 1 to 99",
    ),
    (
        "named-uppercase",
        NAMED,
        _set("spec.components.0.text", "Olá {{First_Name}}, sua consulta é em {{date}}. Até breve!"),
        "NAMED placeholders must be lowercase names",
    ),
    (
        "named-repeated",
        NAMED,
        _set("spec.components.0.text", "Olá {{first_name}}, {{first_name}}, consulta em {{date}}. Até!"),
        "each name may be used once",
    ),
    (
        "named-duplicate-example",
        NAMED,
        _set("spec.components.0.example.bodyTextNamedParams.1.paramName", "first_name"),
        'spec.components[0].example.bodyTextNamedParams[1]: Duplicate value: {"paramName":"first_name"}',
    ),
    (
        "positional-missing-examples",
        ORDER,
        _set("spec.components.1.example", DELETE),
        "POSITIONAL placeholders need examples",
    ),
    (
        "positional-too-few-examples",
        ORDER,
        _set("spec.components.1.example.bodyText", [["Maria", "#4521"]]),
        "POSITIONAL placeholders need examples",
    ),
    (
        "header-placeholder-without-example",
        ORDER,
        _set("spec.components.0.example", DELETE),
        "POSITIONAL placeholders need examples",
    ),
    (
        "named-example-for-other-name",
        NAMED,
        _set("spec.components.0.example.bodyTextNamedParams.1.paramName", "day"),
        "NAMED placeholders need examples",
    ),
    (
        "body-starts-with-placeholder",
        ORDER,
        _set("spec.components.1.text", "{{1}}, your order {{2}} has shipped and arrives {{3}}."),
        "the BODY must not start or end with a placeholder",
    ),
    (
        "body-ends-with-placeholder",
        ORDER,
        _set("spec.components.1.text", "Hi {{1}}, your order {{2}} has shipped and arrives {{3}}"),
        "the BODY must not start or end with a placeholder",
    ),
    (
        "unbalanced-braces",
        ORDER,
        _set("spec.components.1.text", "Hi {{1}, your order {{2}} has shipped and arrives {{3}}."),
        "text has unbalanced placeholder braces",
    ),
    (
        "adjacent-placeholders",
        ORDER,
        _set("spec.components.1.text", "Hi {{1}}, your order {{2}}{{3}} has shipped."),
        "placeholders must be separated by text",
    ),
    (
        "two-header-placeholders",
        ORDER,
        _set("spec.components.0.text", "Order {{1}} {{2}}"),
        "a HEADER text may hold at most one placeholder",
    ),
]


@pytest.mark.parametrize(
    ("source", "mutate", "expected"), [c[1:] for c in INVALID_CASES], ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_manifest_is_rejected(
    kube: Kube, namespace: str, source: str, mutate: Callable[[Manifest], None], expected: str
) -> None:
    manifest = example(source)
    mutate(manifest)
    code, stderr = apply(kube, namespace, manifest)
    assert code != 0, f"the API server accepted an invalid {manifest['kind']}"
    assert expected in stderr, stderr
    kind = manifest["kind"].lower()
    assert kube.run("get", "-n", namespace, kind, manifest["metadata"]["name"], check=False).returncode != 0


IMMUTABLE_CASES = [
    ("acme", "spec.wabaId", "999999999999999", "wabaId is immutable"),
    ("acme-support", "spec.phoneNumberId", "999999999999999", "phoneNumberId is immutable"),
    ("acme-support", "spec.tenantRef", {"name": "other"}, "tenantRef is immutable"),
    (ORDER, "spec.tenantRef", {"name": "other"}, "tenantRef is immutable"),
    (ORDER, "spec.name", "order_update_v2", "name is immutable"),
    (ORDER, "spec.language", "en_GB", "language is immutable"),
]


@pytest.mark.parametrize(
    ("source", "path", "value", "expected"), IMMUTABLE_CASES, ids=[f"{c[0]}:{c[1]}" for c in IMMUTABLE_CASES]
)
def test_immutable_fields(
    kube: Kube, namespace: str, source: str, path: str, value: Any, expected: str
) -> None:
    manifest = example(source)
    assert apply(kube, namespace, manifest)[0] == 0
    changed = copy.deepcopy(manifest)
    _set(path, value)(changed)
    code, stderr = apply(kube, namespace, changed)
    assert code != 0
    assert expected in stderr, stderr
    stored = json.loads(
        kube.run("get", "-n", namespace, manifest["kind"].lower(), source, "-o", "json").stdout
    )
    field = path.removeprefix("spec.")
    assert stored["spec"][field] == manifest["spec"][field], "the refused change left the stored value alone"


def test_mutable_fields_can_change(kube: Kube, namespace: str) -> None:
    tenant = example("acme")
    assert apply(kube, namespace, tenant)[0] == 0
    tenant["spec"]["suspended"] = True
    tenant["spec"]["quotas"]["messagesPerSecond"] = 5
    code, stderr = apply(kube, namespace, tenant)
    assert code == 0, stderr
    stored = json.loads(kube.run("get", "-n", namespace, "tenant", "acme", "-o", "json").stdout)
    assert stored["spec"]["suspended"] is True
    assert stored["metadata"]["generation"] == 2


STATUS: dict[str, Any] = {
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Reconciled",
            "message": "tenant onboarded",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        }
    ],
}


def test_status_is_written_only_through_the_status_subresource(kube: Kube, namespace: str) -> None:
    assert apply(kube, namespace, example("acme"))[0] == 0
    # A patch of the main resource cannot set status: the API server drops it.
    kube.run("patch", "-n", namespace, "tenant", "acme", "--type=merge", "-p", json.dumps({"status": STATUS}))
    stored = json.loads(kube.run("get", "-n", namespace, "tenant", "acme", "-o", "json").stdout)
    assert "status" not in stored or not stored["status"].get("conditions")
    # Through the subresource it lands, and the printer columns read it.
    kube.run(
        "patch",
        "-n",
        namespace,
        "tenant",
        "acme",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": STATUS}),
    )
    stored = json.loads(kube.run("get", "-n", namespace, "tenant", "acme", "-o", "json").stdout)
    assert stored["status"]["conditions"][0]["reason"] == "Reconciled"
    table = kube.run("get", "-n", namespace, "tenant", "acme").stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "READY", "REASON", "WABA", "SUSPENDED"]
    assert table[1].split()[:4] == ["acme", "True", "Reconciled", "102290129340398"]


def test_status_condition_shape_is_enforced(kube: Kube, namespace: str) -> None:
    assert apply(kube, namespace, example("acme"))[0] == 0
    bad = copy.deepcopy(STATUS)
    bad["conditions"][0]["status"] = "Yes"
    bad["conditions"][0]["reason"] = "not camel case!"
    result = kube.run(
        "patch",
        "-n",
        namespace,
        "tenant",
        "acme",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": bad}),
        check=False,
    )
    assert result.returncode != 0
    assert 'Unsupported value: "Yes"' in result.stderr
    assert "status.conditions[0].reason: Invalid value" in result.stderr
