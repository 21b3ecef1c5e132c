"""Which tenant owns a unit, from a snapshot of the cluster's Tenants and PhoneNumbers.

Routing keys by field (reference §1.9, §10 facts 3 and 4):
- payloads with `metadata.phone_number_id` (messages and the like): that number's PhoneNumber,
  which must be Ready and not in conflict, and whose Tenant must hold the entry's WABA;
- phone-number quality/name and security: `display_phone_number` among the Ready numbers of the
  Tenant holding the entry's WABA;
- partner `account_update`: `value.waba_info.waba_id` (entry.id is the partner's business there);
- everything else: the Tenant holding `entry.id`, the WABA.
A WABA belongs to the oldest Tenant whose token the operator proved to reach it. Anything else is
unroutable, with the reason, and never reaches a tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wabaplane.gateway.units import Unit
from wabaplane.store import Target

# Fields whose values name their number in metadata.phone_number_id: only that number routes them.
NUMBER_FIELDS = frozenset({"messages", "message_echoes", "smb_message_echoes", "user_preferences", "calls"})
DISPLAY_NUMBER_FIELDS = frozenset({"phone_number_quality_update", "phone_number_name_update", "security"})
# Fields whose truth the operator writes into status (operator/management.py).
MANAGEMENT_FIELDS = frozenset(
    {
        "message_template_status_update",
        "message_template_quality_update",
        "template_category_update",
        "phone_number_quality_update",
        "phone_number_name_update",
        "security",
        "account_update",
    }
)


def digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


@dataclass(frozen=True)
class TenantInfo:
    namespace: str
    name: str
    waba_id: str
    created: str
    ownership_proven: bool
    suspended: bool = False
    webhook_url: str | None = None
    fields: frozenset[str] = frozenset({"messages"})
    max_in_flight: int = 10
    messages_per_second: int = 20
    burst: int = 40
    monthly_messages: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class NumberInfo:
    namespace: str
    name: str
    tenant: str
    phone_number_id: str
    display_digits: str
    ready: bool
    conflict: bool
    created: str
    throughput_level: str | None = None
    messaging_limit: str | None = None

    @property
    def routable(self) -> bool:
        return self.ready and not self.conflict


@dataclass(frozen=True)
class TemplateInfo:
    namespace: str
    tenant: str
    name: str
    language: str
    status: str | None
    category: str | None
    body_parameters: int
    header_parameters: int


def language_key(code: str) -> str:
    """Meta writes en_US and en-US; templates are compared on one spelling."""
    return code.replace("-", "_").lower()


@dataclass(frozen=True)
class Route:
    namespace: str | None
    tenant: str | None
    targets: tuple[Target, ...] = ()
    reason: str | None = None

    @property
    def routed(self) -> bool:
        return self.tenant is not None


@dataclass
class Snapshot:
    """An immutable-by-convention view of the cluster; the watcher swaps in a new one on change."""

    tenants: dict[tuple[str, str], TenantInfo] = field(default_factory=dict)
    numbers: dict[tuple[str, str], NumberInfo] = field(default_factory=dict)
    # (namespace, tenant, name, language_key) -> template
    templates: dict[tuple[str, str, str, str], TemplateInfo] = field(default_factory=dict)
    by_waba: dict[str, list[TenantInfo]] = field(init=False)
    by_phone_id: dict[str, list[NumberInfo]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_waba = {}
        for tenant in sorted(self.tenants.values(), key=lambda t: (t.created, t.namespace, t.name)):
            self.by_waba.setdefault(tenant.waba_id, []).append(tenant)
        self.by_phone_id = {}
        for number in sorted(self.numbers.values(), key=lambda n: (n.created, n.namespace, n.name)):
            self.by_phone_id.setdefault(number.phone_number_id, []).append(number)

    def owner_of_waba(self, waba_id: str) -> TenantInfo | None:
        return next((t for t in self.by_waba.get(waba_id, []) if t.ownership_proven), None)


def route(unit: Unit, snapshot: Snapshot, *, operator: bool) -> Route:
    if unit.malformed:
        return Route(None, None, reason=unit.malformed)
    tenant, reason = _owner(unit, snapshot)
    if tenant is None:
        return Route(None, None, reason=reason)
    targets: list[Target] = []
    if tenant.webhook_url and unit.field in tenant.fields:
        targets.append("tenant")
    if operator and unit.field in MANAGEMENT_FIELDS:
        targets.append("operator")
    return Route(tenant.namespace, tenant.name, tuple(targets))


def _owner(unit: Unit, snapshot: Snapshot) -> tuple[TenantInfo | None, str]:
    value = unit.value
    metadata = value.get("metadata")
    phone_number_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    if phone_number_id is not None:
        return _owner_of_number(str(phone_number_id), unit.entry_id, snapshot)
    if unit.field in NUMBER_FIELDS:
        return None, f"a {unit.field} change without metadata.phone_number_id"
    if unit.field in DISPLAY_NUMBER_FIELDS:
        return _owner_of_display_number(digits(value.get("display_phone_number")), unit.entry_id, snapshot)
    waba_id = unit.entry_id
    if unit.field == "account_update":
        waba_info = value.get("waba_info")
        if isinstance(waba_info, dict) and waba_info.get("waba_id"):
            waba_id = str(waba_info["waba_id"])
    tenant = snapshot.owner_of_waba(waba_id)
    if tenant is None:
        return None, f"no Tenant with proven ownership of WABA {waba_id}"
    return tenant, ""


def _owner_of_number(phone_number_id: str, waba_id: str, snapshot: Snapshot) -> tuple[TenantInfo | None, str]:
    number = next((n for n in snapshot.by_phone_id.get(phone_number_id, []) if n.routable), None)
    if number is None:
        return None, f"no Ready PhoneNumber (without conflict) for phone number id {phone_number_id}"
    tenant = snapshot.tenants.get((number.namespace, number.tenant))
    if tenant is None:
        return None, f"the PhoneNumber for {phone_number_id} names a Tenant that does not exist"
    if tenant.waba_id != waba_id:
        return None, f"phone number id {phone_number_id} arrived under WABA {waba_id}, not its Tenant's WABA"
    return tenant, ""


def _owner_of_display_number(display: str, waba_id: str, snapshot: Snapshot) -> tuple[TenantInfo | None, str]:
    tenant = snapshot.owner_of_waba(waba_id)
    if tenant is None:
        return None, f"no Tenant with proven ownership of WABA {waba_id}"
    owned = any(
        number.routable
        and number.display_digits == display
        and (number.namespace, number.tenant) == tenant.key
        for number in snapshot.numbers.values()
    )
    if not display or not owned:
        return None, f"no Ready PhoneNumber with display number {display or '(none)'} in WABA {waba_id}"
    return tenant, ""
