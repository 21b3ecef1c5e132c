"""Tenant: one client business and its WhatsApp Business Account (WABA)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from wabaplane.api.common import (
    AGE_COLUMN,
    MESSAGE_COLUMN,
    READY_COLUMNS,
    DigitString,
    ObjectName,
    SecretKeyRef,
    StatusBase,
)
from wabaplane.api.schema import CamelModel, cel, immutable, validations

# Meta's webhook fields (reference §1.7). A tenant may only ask for fields that concern its own
# WABA; partner-level fields (partner_solutions, ...) stay with the platform.
WebhookField = Literal[
    "messages",
    "message_echoes",
    "message_template_status_update",
    "message_template_quality_update",
    "message_template_components_update",
    "template_category_update",
    "phone_number_name_update",
    "phone_number_quality_update",
    "account_alerts",
    "account_review_update",
    "account_update",
    "business_capability_update",
    "security",
    "user_preferences",
    "history",
    "smb_app_state_sync",
    "smb_message_echoes",
    "flows",
    "calls",
]


class EmbeddedSignup(CamelModel):
    """A one-time Embedded Signup code, exchanged by the operator for a business token."""

    code_secret_ref: SecretKeyRef = Field(
        description="Secret key holding the code returned by Embedded Signup. The code is single-use "
        "and valid for about 30 seconds, so apply the Secret right after the signup; the operator "
        "empties it once exchanged."
    )


class Credentials(CamelModel):
    """Exactly one way for the operator to obtain the tenant's Graph API token."""

    token_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding an existing system-user or business-integration token.",
    )
    embedded_signup: EmbeddedSignup | None = Field(
        default=None, description="Exchange an Embedded Signup code for a business token."
    )
    allow_multi_waba_token: bool = Field(
        default=False,
        description="Accept a token whose scopes also name other WABAs. By default such a token is refused "
        "(TokenScopeTooBroad), because a leaked tenant token must not reach other businesses.",
    )


CREDENTIALS_RULES = [
    cel(
        "has(self.tokenSecretRef) != has(self.embeddedSignup)",
        "credentials must set exactly one of tokenSecretRef or embeddedSignup.codeSecretRef",
    )
]


class Webhook(CamelModel):
    """Where the gateway delivers this tenant's events."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/?#]+[^\s]*$", max_length=2048)] = Field(
        description="The tenant's endpoint (http or https URL). Deliveries are signed with the "
        "tenant's webhook secret."
    )
    fields: list[WebhookField] = Field(
        default=["messages"],
        min_length=1,
        max_length=32,
        description="Meta webhook fields the tenant wants delivered.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class Quotas(CamelModel):
    """Per-tenant limits the gateway enforces before Meta sees a request."""

    messages_per_second: Annotated[int, Field(ge=1, le=10000)] = Field(
        default=20, description="Sustained send rate across all of the tenant's numbers."
    )
    burst: Annotated[int, Field(ge=1, le=100000)] = Field(
        default=40, description="Sends allowed at once above the sustained rate (token-bucket size)."
    )
    monthly_messages: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Cap on messages sent per calendar month (UTC). Unset: no cap."
    )
    max_in_flight_deliveries: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=10, description="Concurrent webhook deliveries to the tenant's endpoint."
    )


QUOTAS_RULES = [
    cel("self.burst >= self.messagesPerSecond", "quotas.burst must be at least quotas.messagesPerSecond")
]


class TenantSpec(CamelModel):
    """The desired state of a tenant."""

    display_name: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="Human-readable name of the client business."
    )
    waba_id: DigitString = Field(
        description="The tenant's WhatsApp Business Account id. Immutable.",
        json_schema_extra=validations(immutable("wabaId")),
    )
    business_id: DigitString | None = Field(
        default=None, description="The tenant's Meta business portfolio id, if known."
    )
    credentials: Credentials = Field(
        description="How the operator obtains the tenant's token.",
        json_schema_extra=validations(*CREDENTIALS_RULES),
    )
    webhook: Webhook | None = Field(
        default=None, description="The tenant's event endpoint. Unset: events are stored but not delivered."
    )
    quotas: Quotas = Field(
        default_factory=Quotas,
        description="Send quotas; every field has a default.",
        # The full default, not {}: the API server checks a default against the CEL rules before
        # it applies the defaults of the nested fields.
        json_schema_extra={
            "default": Quotas().model_dump(by_alias=True, exclude_none=True),
            **validations(*QUOTAS_RULES),
        },
    )
    suspended: bool = Field(
        default=False,
        description="Stop the tenant's sends and hold its deliveries until set back to false.",
    )


class TenantStatus(StatusBase):
    """What the operator observed."""

    token_secret_name: ObjectName | None = Field(
        default=None, description="The Secret (owned by the Tenant) holding the Graph API token."
    )
    token_expires_at: datetime | None = Field(
        default=None, description="When the token expires; unset for tokens that never expire."
    )
    api_key_secret_name: ObjectName | None = Field(
        default=None, description="The Secret holding the tenant's gateway API key."
    )
    webhook_secret_name: ObjectName | None = Field(
        default=None, description="The Secret holding the tenant's webhook signing secret."
    )
    subscribed: bool | None = Field(
        default=None, description="Whether the app is subscribed to the WABA's webhooks."
    )
    suspended: bool | None = Field(default=None, description="Whether sends and deliveries are stopped.")


PRINTER_COLUMNS: list[dict[str, Any]] = [
    *READY_COLUMNS,
    {"name": "WABA", "type": "string", "jsonPath": ".spec.wabaId"},
    {"name": "Suspended", "type": "boolean", "jsonPath": ".spec.suspended"},
    {"name": "Token-Expires", "type": "date", "priority": 1, "jsonPath": ".status.tokenExpiresAt"},
    MESSAGE_COLUMN,
    AGE_COLUMN,
]
