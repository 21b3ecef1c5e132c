"""PhoneNumber: one business number of a Tenant."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from wabaplane.api.common import (
    AGE_COLUMN,
    MESSAGE_COLUMN,
    READY_COLUMNS,
    TENANT_REF_SCHEMA,
    DigitString,
    SecretKeyRef,
    StatusBase,
    TenantRef,
)
from wabaplane.api.schema import CamelModel, immutable, validations

ShortText = Annotated[str, StringConstraints(max_length=256)]


class Registration(CamelModel):
    """How the operator registers the number for the Cloud API."""

    pin_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the six-digit two-step verification PIN. Unset: the number "
        "is expected to be registered already and the operator only checks it.",
    )


class PhoneNumberSpec(CamelModel):
    """The desired state of a phone number."""

    tenant_ref: TenantRef = Field(
        description="The Tenant owning this number, in the same namespace. Immutable.",
        json_schema_extra=TENANT_REF_SCHEMA,
    )
    phone_number_id: DigitString = Field(
        description="Meta's phone number id (not the phone number itself). Immutable.",
        json_schema_extra=validations(immutable("phoneNumberId")),
    )
    registration: Registration | None = Field(default=None, description="Cloud API registration.")


class PhoneNumberStatus(StatusBase):
    """What the operator observed at Meta and from webhooks."""

    display_phone_number: ShortText | None = Field(default=None, description="The number as Meta shows it.")
    verified_name: ShortText | None = Field(default=None, description="The approved display name.")
    name_status: ShortText | None = Field(
        default=None, description="Meta's display-name review status, e.g. APPROVED."
    )
    quality_rating: ShortText | None = Field(default=None, description="GREEN, YELLOW, RED or UNKNOWN.")
    messaging_limit: ShortText | None = Field(
        default=None, description="Business-initiated conversations allowed per 24 h, e.g. TIER_2K."
    )
    throughput_level: ShortText | None = Field(
        default=None, description="Meta's throughput level: STANDARD (80 mps) or HIGH (1000 mps)."
    )
    registered: bool | None = Field(default=None, description="Whether the number is registered.")
    code_verification_status: ShortText | None = Field(
        default=None, description="VERIFIED, NOT_VERIFIED or EXPIRED."
    )
    last_event_time: int | None = Field(
        default=None, description="Meta's time of the last management event applied (older ones are ignored)."
    )


PRINTER_COLUMNS: list[dict[str, Any]] = [
    *READY_COLUMNS,
    {"name": "Tenant", "type": "string", "jsonPath": ".spec.tenantRef.name"},
    {"name": "Number", "type": "string", "jsonPath": ".status.displayPhoneNumber"},
    {"name": "Quality", "type": "string", "jsonPath": ".status.qualityRating"},
    {"name": "Limit", "type": "string", "priority": 1, "jsonPath": ".status.messagingLimit"},
    MESSAGE_COLUMN,
    AGE_COLUMN,
]
