"""Typed Graph API responses. Unknown fields are kept (Meta adds fields without notice)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


class AccessToken(_Response):
    """The result of a code exchange. The token is a SecretStr so it never shows in a repr or log."""

    access_token: SecretStr
    token_type: str = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int | None = None


class GranularScope(_Response):
    scope: str
    target_ids: list[str] = Field(default_factory=list)


class TokenInfo(_Response):
    app_id: str | None = None
    type: str | None = None
    application: str | None = None
    expires_at: int | None = Field(default=None, description="Unix time; 0 means never.")
    data_access_expires_at: int | None = None
    is_valid: bool = False
    issued_at: int | None = None
    scopes: list[str] = Field(default_factory=list)
    granular_scopes: list[GranularScope] = Field(default_factory=list)
    user_id: str | None = None
    error: dict[str, Any] | None = None

    def target_ids(self, scope: str) -> list[str]:
        """The WABA ids a granular scope names (newest onboarded first, as Meta lists them)."""
        return [target for item in self.granular_scopes if item.scope == scope for target in item.target_ids]


class Throughput(_Response):
    level: str | None = None


class PhoneNumberInfo(_Response):
    id: str
    display_phone_number: str | None = None
    verified_name: str | None = None
    quality_rating: str | None = None
    code_verification_status: str | None = None
    name_status: str | None = None
    status: str | None = None
    platform_type: str | None = None
    throughput: Throughput | None = None
    whatsapp_business_manager_messaging_limit: str | None = None
    messaging_limit_tier: str | None = None

    @property
    def messaging_limit(self) -> str | None:
        return self.whatsapp_business_manager_messaging_limit or self.messaging_limit_tier


class SubscribedApp(_Response):
    whatsapp_business_api_data: dict[str, Any] = Field(default_factory=dict)
    override_callback_uri: str | None = None

    @property
    def app_id(self) -> str | None:
        value = self.whatsapp_business_api_data.get("id")
        return str(value) if value is not None else None


class TemplateInfo(_Response):
    id: str
    name: str | None = None
    language: str | None = None
    status: str | None = None
    category: str | None = None
    parameter_format: str | None = None
    components: list[dict[str, Any]] = Field(default_factory=list)
    quality_score: dict[str, Any] | None = None
    rejected_reason: str | None = None


class TemplateCreated(_Response):
    id: str
    status: str
    category: str | None = None


class SentContact(_Response):
    input: str
    wa_id: str


class SentMessageId(_Response):
    id: str
    message_status: str | None = None


class SendResult(_Response):
    messaging_product: str = "whatsapp"
    contacts: list[SentContact] = Field(default_factory=list)
    messages: list[SentMessageId]

    @property
    def message_id(self) -> str:
        return self.messages[0].id
