"""What an ingested unit means for the message log and its conversation."""

from __future__ import annotations

import json
from typing import Any

from wabaplane.gateway.routing import Route
from wabaplane.gateway.units import Unit
from wabaplane.store import MessageRecord, StatusRecord, conversation_id

CONVERSATION_HEADER = "X-Wabaplane-Conversation-Id"


def _phone_and_customer(value: dict[str, Any]) -> tuple[str, str] | None:
    metadata = value.get("metadata")
    phone = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    items = value.get("messages") or value.get("statuses") or []
    item = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
    customer = item.get("from") or item.get("recipient_id")
    if phone is None or not customer:
        return None
    return str(phone), str(customer)


def conversation_of(namespace: str, tenant: str, value: dict[str, Any]) -> str | None:
    found = _phone_and_customer(value)
    return conversation_id(namespace, tenant, *found) if found else None


def _timestamp(item: dict[str, Any]) -> float | None:
    try:
        return float(item["timestamp"])
    except (KeyError, TypeError, ValueError):
        return None


def logs_for(unit: Unit, route: Route) -> tuple[MessageRecord | StatusRecord, ...]:
    if unit.field != "messages" or route.namespace is None or route.tenant is None:
        return ()
    found = _phone_and_customer(unit.value)
    if found is None:
        return ()
    phone, customer = found
    logs: list[MessageRecord | StatusRecord] = []
    for message in unit.value.get("messages") or []:
        if not isinstance(message, dict) or not isinstance(message.get("id"), str):
            continue
        context = message.get("context")
        logs.append(MessageRecord(
            id=message["id"], namespace=route.namespace, tenant=route.tenant, phone_number_id=phone,
            customer=customer, direction="inbound", type=str(message.get("type", "unknown"))[:32],
            body=json.dumps(message, separators=(",", ":")), status="received",
            context_id=context.get("id") if isinstance(context, dict) else None, at=_timestamp(message),
        ))  # fmt: skip
    for status in unit.value.get("statuses") or []:
        if not isinstance(status, dict) or not isinstance(status.get("id"), str):
            continue
        errors = status.get("errors") if isinstance(status.get("errors"), list) else []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        code = first.get("code")
        logs.append(StatusRecord(
            message_id=status["id"], namespace=route.namespace, tenant=route.tenant, status=str(status.get("status")),
            error_code=code if isinstance(code, int) else None, error_title=first.get("title"),
        ))  # fmt: skip
    return tuple(logs)
