"""The emulator's settings: Meta's documented limits and timings, all configurable so tests stay fast."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Limits(BaseModel):
    """Meta's limits (reference §4, §5, §6)."""

    messages_per_second_per_number: int = Field(default=80, description="130429 above this (STANDARD).")
    high_throughput_messages_per_second: int = Field(default=1000, description="For numbers with level HIGH.")
    pair_burst: int = Field(default=45, description="Messages to one user at once before 131056.")
    pair_refill_seconds: float = Field(default=6.0, description="One more message to a user per this many s.")
    template_creates_per_hour: int = 100
    management_calls_per_hour: int = Field(default=200, description="Per app per WABA; 80007 above.")
    registrations_per_72_hours: int = Field(default=10, description="register + deregister; 133016 above.")
    approved_edits_per_day: int = 1
    approved_edits_per_30_days: int = 10
    customer_service_window_seconds: float = 24 * 3600
    signup_code_ttl_seconds: float = 30.0


class EmulatorSettings(BaseModel):
    app_id: str = "1234567890123456"
    app_secret: str = "emulator-app-secret"  # noqa: S105 - the emulator's public default
    verify_token: str = "emulator-verify-token"  # noqa: S105 - the emulator's public default
    callback_url: str | None = Field(default=None, description="The app's webhook callback URL.")
    callback_fields: list[str] | None = Field(
        default=None, description="Fields the app is subscribed to; None means every field."
    )
    api_version: str = Field(default="v25.0", description="The version assumed for unversioned paths.")
    limits: Limits = Field(default_factory=Limits)
    template_review_seconds: float = Field(default=1.0, description="Delay before the automatic review.")
    auto_review: bool = True
    status_delays: tuple[float, float, float] = Field(
        default=(0.05, 0.15, 0.3), description="Seconds after a send until sent, delivered and read."
    )
    auto_read: bool = Field(default=True, description="Emit a read status after delivered.")
    shuffle_statuses: bool = Field(
        default=False, description="Emit a message's statuses in random order, as Meta may."
    )
    window_error_mode: Literal["async", "sync"] = Field(
        default="async",
        description="131047 as a failed status after a 200 (Meta's usual behaviour) or as the send's error.",
    )
    undeliverable_numbers: list[str] = Field(
        default_factory=list, description="Recipients whose messages fail with 131026 (not on WhatsApp)."
    )
    webhook_retry_schedule: list[float] = Field(
        default=[0.0, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 6 * 3600.0],
        description="Seconds before each retry of a webhook POST; Meta keeps trying for up to 7 days.",
    )
    webhook_batch_window: float = Field(default=0.02, description="Seconds to gather changes into one POST.")
    webhook_max_batch: int = Field(default=1000, description="Most changes in one POST.")
    webhook_timeout: float = 10.0
    http_status_overrides: dict[int, int] = Field(
        default_factory=dict, description="HTTP status to answer per error code (sources disagree)."
    )
    random_seed: int | None = None
