"""Turn pydantic models into Kubernetes structural OpenAPI v3 schemas.

pydantic emits JSON Schema 2020-12 with `$ref`s, titles and `anyOf [X, null]` for optional
fields. A CRD needs a structural schema: every node typed, no references, no `null` branches,
`additionalProperties` never beside `properties`. This module does that conversion and nothing
else; the kinds declare their CEL rules and list semantics through `json_schema_extra`.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict, JsonValue

JsonSchema = dict[str, Any]

# Keys of JSON Schema that Kubernetes' structural schema does not accept or that only add noise.
_DROPPED_KEYS = frozenset({"title", "additionalProperties", "$defs", "discriminator"})
# pydantic replaces a field's `items` with the one given in json_schema_extra; rules meant for the
# items of a list field go under this key instead and are merged into the generated item schema.
ITEMS_EXTRA = "x-wabaplane-items"
# Put the keys a reader looks for first at the top of every node.
_KEY_ORDER = ("type", "description", "default")


class CamelModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, strict about extras."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )


def cel(rule: str, message: str, *, field_path: str | None = None, reason: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry."""
    validation: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        validation["fieldPath"] = field_path
    if reason is not None:
        validation["reason"] = reason
    return validation


def validations(*rules: JsonDict) -> JsonDict:
    """The schema extra that attaches CEL rules to a field or model."""
    entries: list[JsonValue] = list(rules)
    return {"x-kubernetes-validations": entries}


def items_validations(*rules: JsonDict) -> JsonDict:
    """The schema extra that attaches CEL rules to each item of a list field."""
    return {ITEMS_EXTRA: validations(*rules)}


def immutable(field: str) -> JsonDict:
    """A transition rule that refuses any change of a field once it is set."""
    return cel("self == oldSelf", f"{field} is immutable; delete and recreate the resource to change it")


def structural_schema(model: type[BaseModel]) -> JsonSchema:
    """The structural OpenAPI v3 schema of a model, with every `$ref` inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, JsonSchema] = raw.get("$defs", {})
    return _convert(raw, definitions)


def _convert(node: JsonSchema, definitions: dict[str, JsonSchema]) -> JsonSchema:
    node = dict(node)
    if "$ref" in node:
        name = node.pop("$ref").rsplit("/", 1)[-1]
        node = _deep_merge(copy.deepcopy(definitions[name]), node)
    if "allOf" in node and len(node["allOf"]) == 1:
        node = _deep_merge(node.pop("allOf")[0], node)
        return _convert(node, definitions)
    if "anyOf" in node:
        branches = [branch for branch in node.pop("anyOf") if branch.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"a CRD schema cannot express a union of {len(branches)} types: {branches}")
        node = _deep_merge(branches[0], node)
        return _convert(node, definitions)
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")

    if node.get("default", ...) is None:
        # An absent optional field is simply omitted; a CRD default of null is invalid.
        del node["default"]
    enum = node.get("enum")
    if enum and all(isinstance(value, str) for value in enum) and "maxLength" not in node:
        # CEL's cost estimator does not read enums; without a bound every string is assumed huge.
        node["maxLength"] = max(len(value) for value in enum)
    if ITEMS_EXTRA in node:
        node["items"] = _deep_merge(node["items"], node.pop(ITEMS_EXTRA))

    converted: JsonSchema = {key: node[key] for key in _KEY_ORDER if key in node}
    for key, value in node.items():
        if key in _KEY_ORDER:
            continue
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            converted[key] = {name: _convert(child, definitions) for name, child in value.items()}
        elif key == "items":
            converted[key] = _convert(value, definitions)
        else:
            converted[key] = value
    if converted.get("type") == "object" and "properties" not in converted:
        # An open map (dict[str, X]) is the one place additionalProperties belongs.
        additional = node.get("additionalProperties")
        if isinstance(additional, dict):
            converted["additionalProperties"] = _convert(additional, definitions)
    return converted


def _deep_merge(base: JsonSchema, extra: JsonSchema) -> JsonSchema:
    """`extra` laid over `base`; nested objects merge, so a field's extra `items` rules keep the item type."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
