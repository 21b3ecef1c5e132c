"""The one helper that sets conditions, with metav1.Condition's transition rules.

`lastTransitionTime` changes only when `status` flips; `observedGeneration` is always written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Condition = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[Condition], type_: str, status: bool | None, reason: str, message: str, generation: int
) -> list[Condition]:
    """A new list with `type_` set; the others are kept in order."""
    value = "Unknown" if status is None else "True" if status else "False"
    existing = next((c for c in conditions if c.get("type") == type_), None)
    changed_status = existing is None or existing.get("status") != value
    condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:32768],
        "observedGeneration": generation,
        "lastTransitionTime": now() if changed_status else existing["lastTransitionTime"],  # type: ignore[index]
    }
    if existing is None:
        return [*conditions, condition]
    return [condition if c.get("type") == type_ else c for c in conditions]


def remove_condition(conditions: list[Condition], type_: str) -> list[Condition]:
    return [c for c in conditions if c.get("type") != type_]


def get(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    condition = get(conditions, type_)
    return condition is not None and condition.get("status") == "True"
