"""The gateway's configuration: one validated object, from the command line and the environment."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator

# About three days, in the Standard Webhooks / Svix spirit: quick retries first, then hours apart.
DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0, 36000.0, 36000.0, 36000.0,
                          36000.0, 18000.0)  # fmt: skip
MEGABYTE = 1024 * 1024


def parse_duration(text: str) -> float:
    """`250ms`, `5s`, `5m`, `2h`, `1d` or plain seconds."""
    text = text.strip()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * factor
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration such as 500ms, 5s, 5m, 2h or 1d") from None


class GatewaySettings(BaseModel):
    store_url: str = Field(
        default="sqlite:///wabaplane-gateway.db", description="sqlite:///file or postgresql://..."
    )
    app_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Meta app secrets accepted on webhooks (current first, then previous).",
    )
    verify_token: SecretStr | None = Field(
        default=None, description="The token of Meta's verification handshake."
    )
    operator_url: str | None = Field(
        default=None, description="Base URL of the operator's management endpoint."
    )
    management_token: SecretStr | None = None
    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()
    watch_cluster: bool = True
    max_body_bytes: int = 3 * MEGABYTE
    max_in_flight_requests: int = Field(default=256, ge=1)
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    retry_jitter: float = Field(default=0.2, ge=0, lt=1)
    max_retry_after: float = 86400.0
    delivery_timeout: float = 10.0
    lease_seconds: float = 30.0
    operator_concurrency: int = 4
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    breaker_max_cooldown: float = 600.0
    allowed_cidrs: tuple[str, ...] = ()
    allow_http: bool = False
    retention_seconds: float = 8 * 86400.0
    dead_retention_seconds: float = 30 * 86400.0
    # Usage is reported per month: keep a year of messages and conversations.
    message_retention_seconds: float = 400 * 86400.0
    idempotency_seconds: float = 86400.0
    poll_interval: float = 1.0
    stats_interval: float = 5.0
    admin_token: SecretStr | None = None
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve /metrics on this port only (not on the public one, whose /metrics then 404s).",
    )
    metrics_host: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes from other pods
    redis_url: str | None = Field(default=None, description="Redis for limits shared by every replica.")
    replicas: int = Field(
        default=1, ge=1, description="Gateway replicas: each one's share of a limit without Redis."
    )
    graph_url: str = Field(
        default="https://graph.facebook.com", description="Meta's Graph API (or the emulator)."
    )
    meta_timeout: float = 30.0

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays must not be negative")
        return value
