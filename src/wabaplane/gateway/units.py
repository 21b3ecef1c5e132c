"""Split Meta's webhook envelope into units: one message, one status, or one change of any other field.

Each unit carries the dedupe key that identifies it across Meta's retries and duplicates
(reference §1.3, §10 fact 5), and a value shaped exactly like Meta's, narrowed to that unit, so
a tenant's code written for Meta parses it unchanged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

OBJECT = "whatsapp_business_account"
TEMPLATE_FIELDS = frozenset(
    {
        "message_template_status_update",
        "message_template_quality_update",
        "message_template_components_update",
        "template_category_update",
    }
)
# Keys of a `messages` value that are split out; anything else stays with its own unit.
SPLIT_KEYS = frozenset({"messages", "statuses"})
CONTEXT_KEYS = ("messaging_product", "metadata")


class MalformedEnvelope(ValueError):
    """The body is not a Meta webhook envelope; the message says what is wrong."""


@dataclass(frozen=True)
class Unit:
    field: str
    entry_id: str
    entry_time: int | None
    value: dict[str, Any]
    dedupe_key: str
    # Set when the change itself is not shaped like Meta's: stored as unroutable, never delivered.
    malformed: str | None = None


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_key(prefix: str, *parts: Any) -> str:
    return f"{prefix}:" + hashlib.sha256(canonical(parts).encode()).hexdigest()


def split(envelope: Any) -> list[Unit]:
    """Every unit of a parsed body; MalformedEnvelope when the body is not Meta's envelope at all."""
    if not isinstance(envelope, dict):
        raise MalformedEnvelope("the body must be a JSON object")
    if envelope.get("object") != OBJECT:
        raise MalformedEnvelope(f'"object" must be "{OBJECT}", got {envelope.get("object")!r}')
    entries = envelope.get("entry")
    if not isinstance(entries, list):
        raise MalformedEnvelope('"entry" must be an array')
    units: list[Unit] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            raise MalformedEnvelope(f"entry[{position}] must be an object with a changes array")
        entry_id = entry.get("id")
        if not isinstance(entry_id, str | int) or isinstance(entry_id, bool):
            raise MalformedEnvelope(f"entry[{position}].id must be a string")
        time = entry.get("time")
        entry_time = time if isinstance(time, int) and not isinstance(time, bool) else None
        for change in entry["changes"]:
            units.extend(_split_change(str(entry_id), entry_time, change))
    return units


def _split_change(entry_id: str, entry_time: int | None, change: Any) -> list[Unit]:
    if (
        not isinstance(change, dict)
        or not isinstance(change.get("field"), str)
        or not isinstance(change.get("value"), dict)
    ):
        return [
            Unit(
                field=str(change.get("field") if isinstance(change, dict) else "unknown")[:100],
                entry_id=entry_id,
                entry_time=entry_time,
                value={"change": change},
                dedupe_key=content_key("malformed", entry_id, entry_time, change),
                malformed="the change is not an object with a string field and an object value",
            )
        ]
    field, value = change["field"], change["value"]
    if field == "messages" and any(isinstance(value.get(key), list) for key in SPLIT_KEYS):
        return _split_messages(entry_id, entry_time, value)
    return [Unit(field, entry_id, entry_time, value, _change_key(entry_id, entry_time, field, value))]


def _change_key(entry_id: str, entry_time: int | None, field: str, value: dict[str, Any]) -> str:
    if field in TEMPLATE_FIELDS and value.get("message_template_id") is not None:
        event = value.get("event") or value.get("new_quality_score") or value.get("new_category")
        digest = content_key("", value)[1:17]
        return f"template:{field}:{value['message_template_id']}:{event}:{entry_time}:{digest}"
    return content_key("change", entry_id, entry_time, field, value)


def _split_messages(entry_id: str, entry_time: int | None, value: dict[str, Any]) -> list[Unit]:
    context = {key: value[key] for key in CONTEXT_KEYS if key in value}
    raw_contacts = value.get("contacts")
    contacts: list[Any] = raw_contacts if isinstance(raw_contacts, list) else []
    units: list[Unit] = []
    for message in value.get("messages") or []:
        narrowed = {**context, "contacts": _contacts_of(contacts, message, "from", "from_user_id")}
        narrowed["messages"] = [message]
        key = _id_key("message", message, ("id",)) or content_key("message", entry_id, message)
        units.append(Unit("messages", entry_id, entry_time, narrowed, key))
    for status in value.get("statuses") or []:
        narrowed = dict(context)
        related = _contacts_of(contacts, status, "recipient_id", "recipient_user_id")
        if related:
            narrowed["contacts"] = related
        narrowed["statuses"] = [status]
        key = _id_key("status", status, ("id", "status")) or content_key("status", entry_id, status)
        units.append(Unit("messages", entry_id, entry_time, narrowed, key))
    rest = {key: item for key, item in value.items() if key not in SPLIT_KEYS and key != "contacts"}
    if set(rest) - set(CONTEXT_KEYS):
        units.append(Unit("messages", entry_id, entry_time, rest, content_key("change", entry_id, rest)))
    return units


def _id_key(prefix: str, item: Any, fields: tuple[str, ...]) -> str | None:
    if not isinstance(item, dict) or not all(
        isinstance(item.get(name), str) and item[name] for name in fields
    ):
        return None
    return ":".join([prefix, *(item[name] for name in fields)])


def _contacts_of(contacts: list[Any], item: Any, number_key: str, user_key: str) -> list[Any]:
    """The contacts entries about this message's customer (all of them when none match)."""
    if not isinstance(item, dict):
        return contacts
    matching = [
        contact
        for contact in contacts
        if isinstance(contact, dict)
        and (
            (item.get(number_key) is not None and contact.get("wa_id") == item.get(number_key))
            or (item.get(user_key) is not None and contact.get("user_id") == item.get(user_key))
        )
    ]
    return matching or contacts
