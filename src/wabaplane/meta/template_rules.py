"""How many parameters a template's components expect (shared by the emulator and the gateway)."""

from __future__ import annotations

import re
from typing import Any

PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def _text_of(components: list[dict[str, Any]], kind: str) -> str | None:
    for component in components:
        if str(component.get("type", "")).upper() == kind and isinstance(component.get("text"), str):
            return str(component["text"])
    return None


def body_parameter_count(components: list[dict[str, Any]]) -> int:
    return len(set(placeholders(_text_of(components, "BODY") or "")))


def header_parameter_count(components: list[dict[str, Any]]) -> int:
    return len(set(placeholders(_text_of(components, "HEADER") or "")))
