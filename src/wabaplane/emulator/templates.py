"""Template creation checks and the asynchronous review (reference §5.2)."""

from __future__ import annotations

import re
from typing import Any

from wabaplane.meta.envelope import GraphError
from wabaplane.meta.template_rules import (
    PLACEHOLDER,
    placeholders,
)

NAME = re.compile(r"^[a-z0-9_]{1,512}$")
CATEGORIES = {"MARKETING", "UTILITY", "AUTHENTICATION"}
COMPONENT_TYPES = {"HEADER", "BODY", "FOOTER", "BUTTONS"}
SPECIAL_CHARACTERS = re.compile(r"[#$%]")


def creation_error(details: str, subcode: int = 2388047) -> GraphError:
    return GraphError(
        code=100,
        subcode=subcode,
        details=details,
        message="Invalid parameter",
    )


def normalise_components(components: Any) -> list[dict[str, Any]]:
    """Components as Meta returns them: types upper-case, keys as sent."""
    if not isinstance(components, list) or not components:
        raise creation_error("components must be a non-empty list")
    normalised = []
    for component in components:
        if not isinstance(component, dict) or not isinstance(component.get("type"), str):
            raise creation_error("each component needs a type")
        copy = dict(component)
        copy["type"] = component["type"].upper()
        if copy["type"] not in COMPONENT_TYPES:
            raise creation_error(f"unknown component type {component['type']}")
        if isinstance(copy.get("format"), str):
            copy["format"] = copy["format"].upper()
        normalised.append(copy)
    return normalised


def check_creation(name: Any, category: Any, components: list[dict[str, Any]]) -> None:
    """Synchronous refusals at creation: what Meta answers with an error instead of a review."""
    if not isinstance(name, str) or not NAME.match(name):
        raise creation_error("name must be lowercase letters, digits and underscores, at most 512", 2388043)
    if not isinstance(category, str) or category.upper() not in CATEGORIES:
        raise creation_error("category must be MARKETING, UTILITY or AUTHENTICATION")
    bodies = [c for c in components if c["type"] == "BODY"]
    if len(bodies) != 1:
        raise creation_error("a template needs exactly one BODY component")
    limits = {"HEADER": 60, "BODY": 1024, "FOOTER": 60}
    for component in components:
        text = component.get("text")
        if isinstance(text, str) and len(text) > limits.get(component["type"], 1024):
            raise creation_error(
                f"{component['type']} text is longer than {limits[component['type']]}", 2388040
            )
        if component["type"] == "BUTTONS":
            buttons = component.get("buttons") or []
            kinds = [str(b.get("type", "")).upper() for b in buttons]
            if len(buttons) > 10 or kinds.count("URL") > 2 or kinds.count("PHONE_NUMBER") > 1:
                raise creation_error("too many buttons: at most 10, 2 URL and 1 PHONE_NUMBER", 2388158)
            if any(len(str(b.get("text", ""))) > 25 for b in buttons):
                raise creation_error("button text is longer than 25", 2388040)
            quick = [i for i, kind in enumerate(kinds) if kind == "QUICK_REPLY"]
            if quick and quick[-1] - quick[0] + 1 != len(quick):
                raise creation_error("quick reply buttons must be grouped together", 2388158)
    body_text = str(bodies[0].get("text", ""))
    found = PLACEHOLDER.findall(body_text)
    if found and (re.match(r"^\s*\{\{", body_text) or re.search(r"\}\}\s*$", body_text)):
        raise creation_error("leading or trailing parameters are not allowed", 2388299)


def review(template_components: list[dict[str, Any]], parameter_format: str, duplicate: bool) -> str | None:
    """Meta's review rules (reference §5.2): the rejection reason, or None when approved."""
    if duplicate:
        return "TAG_CONTENT_MISMATCH"
    for component in template_components:
        text = component.get("text")
        if not isinstance(text, str):
            continue
        found = placeholders(text)
        if text.count("{{") != len(found) or text.count("}}") != len(found):
            return "INVALID_FORMAT"
        if re.search(r"\}\}\s*\{\{", text):
            return "INVALID_FORMAT"
        if any(SPECIAL_CHARACTERS.search(name) for name in found):
            return "INVALID_FORMAT"
        if parameter_format == "POSITIONAL":
            numbers = [int(name) for name in found if name.strip().isdigit()]
            if len(numbers) != len(found) or sorted(set(numbers)) != list(range(1, len(set(numbers)) + 1)):
                return "INVALID_FORMAT"
        elif any(not re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in found):
            return "INVALID_FORMAT"
        if found and not _has_examples(component, found, parameter_format):
            return "INVALID_FORMAT"
    return None


def _has_examples(component: dict[str, Any], found: list[str], parameter_format: str) -> bool:
    example = component.get("example")
    if not isinstance(example, dict):
        return False
    header = component["type"] == "HEADER"
    if parameter_format == "NAMED":
        key = "header_text_named_params" if header else "body_text_named_params"
        named = example.get(key) or []
        return {str(item.get("param_name")) for item in named if isinstance(item, dict)} == set(found)
    if header:
        return len(example.get("header_text") or []) == len(set(found))
    body_text = example.get("body_text") or [[]]
    return bool(body_text) and len(body_text[0]) == len(set(found))


def body_footer(components: list[dict[str, Any]]) -> tuple[str, str]:
    texts = {c["type"]: str(c.get("text", "")) for c in components}
    return texts.get("BODY", ""), texts.get("FOOTER", "")
