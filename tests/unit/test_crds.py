"""The CRDs are generated from the models, structural, and the checked-in files are current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from wabaplane.api import crds, reference
from wabaplane.api.messagetemplate import MessageTemplateSpec
from wabaplane.api.phonenumber import PhoneNumberSpec
from wabaplane.api.tenant import TenantSpec
from wabaplane.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", crds.KINDS, ids=lambda kind: kind.kind)
def test_checked_in_crd_is_current(kind: crds.Kind) -> None:
    checked_in = (REPO / "crds" / crds.file_name(kind)).read_text()
    assert checked_in == crds.render(kind), (
        f"crds/{crds.file_name(kind)} is stale: regenerate it with `wabaplane crds --output-dir crds`"
    )


def test_crds_command_prints_every_kind() -> None:
    result = CliRunner().invoke(main, ["crds"])
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.output))
    assert [doc["spec"]["names"]["kind"] for doc in documents] == ["Tenant", "PhoneNumber", "MessageTemplate"]


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, child in node.get("properties", {}).items():
            found += _walk(child, f"{path}.{key}")
        if "items" in node:
            found += _walk(node["items"], f"{path}[]")
    return found


@pytest.mark.parametrize("kind", crds.KINDS, ids=lambda kind: kind.kind)
def test_schema_is_structural(kind: crds.Kind) -> None:
    """Every node has a type; no references, unions, nulls or additionalProperties beside properties."""
    schema = crds.open_api_schema(kind)
    for path, node in _walk(schema):
        assert "type" in node, f"{kind.kind}{path} has no type"
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "const", "title"):
            assert forbidden not in node, f"{kind.kind}{path} has {forbidden}"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("default", 0) is not None, f"{kind.kind}{path} defaults to null"


@pytest.mark.parametrize("kind", crds.KINDS, ids=lambda kind: kind.kind)
def test_crd_conventions(kind: crds.Kind) -> None:
    crd = crds.crd(kind)
    spec = crd["spec"]
    assert spec["group"] == "wabaplane.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["categories"] == ["wabaplane"]
    assert spec["names"]["shortNames"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = {column["name"]: column for column in version["additionalPrinterColumns"]}
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["Age"]["type"] == "date"
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) == {
        "type",
        "status",
        "lastTransitionTime",
        "reason",
        "message",
    }


def test_spec_field_names_match_the_api() -> None:
    tenant = crds.open_api_schema(crds.TENANT)["properties"]["spec"]["properties"]
    assert set(tenant) == {
        "displayName",
        "wabaId",
        "businessId",
        "credentials",
        "webhook",
        "quotas",
        "suspended",
    }
    assert set(tenant["credentials"]["properties"]) == {
        "tokenSecretRef",
        "embeddedSignup",
        "allowMultiWabaToken",
    }
    assert set(tenant["credentials"]["properties"]["embeddedSignup"]["properties"]) == {"codeSecretRef"}
    assert set(tenant["quotas"]["properties"]) == {
        "messagesPerSecond",
        "burst",
        "monthlyMessages",
        "maxInFlightDeliveries",
    }
    assert tenant["webhook"]["properties"]["fields"]["default"] == ["messages"]
    phone = crds.open_api_schema(crds.PHONE_NUMBER)["properties"]["spec"]["properties"]
    assert set(phone) == {"tenantRef", "phoneNumberId", "registration"}
    assert set(phone["registration"]["properties"]) == {"pinSecretRef"}
    template = crds.open_api_schema(crds.MESSAGE_TEMPLATE)["properties"]["spec"]["properties"]
    assert set(template) == {"tenantRef", "name", "language", "category", "parameterFormat", "components"}
    component = template["components"]["items"]["properties"]
    assert set(component) == {"type", "format", "text", "example", "buttons"}
    assert set(component["example"]["properties"]) == {
        "headerText",
        "headerTextNamedParams",
        "headerHandle",
        "bodyText",
        "bodyTextNamedParams",
    }
    assert set(component["buttons"]["items"]["properties"]) == {
        "type",
        "text",
        "url",
        "phoneNumber",
        "example",
    }


SPEC_MODELS: dict[str, type[BaseModel]] = {
    "Tenant": TenantSpec,
    "PhoneNumber": PhoneNumberSpec,
    "MessageTemplate": MessageTemplateSpec,
}


def test_examples_parse_with_the_models() -> None:
    """The models the operator will use accept the examples the API server accepts."""
    seen = set()
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            model = SPEC_MODELS.get(document["kind"])  # Secrets and the emulator's seed ConfigMap are skipped
            if model is not None:
                model.model_validate(document["spec"])
                seen.add(document["kind"])
    assert seen == set(SPEC_MODELS)


def test_readme_reference_is_current() -> None:
    readme = (REPO / "README.md").read_text()
    assert readme == reference.replace_in(readme), (
        "the CRD reference in README.md is stale: run `wabaplane crds --update-readme README.md`"
    )
