"""The operator's settings: the Meta app and timings, from the environment (filled from a Secret)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorSettings:
    app_id: str
    app_secret: str
    graph_url: str = "https://graph.facebook.com"
    api_version: str = "v25.0"
    # Raise TokenExpiring this long before a token expires.
    token_expiry_warning_seconds: float = 7 * 24 * 3600
    # How often tokens are re-checked and numbers and templates refreshed from Meta.
    resync_seconds: float = 300.0
    # How often a PENDING template is polled (webhooks usually arrive first).
    pending_poll_seconds: float = 30.0
    # How long a rotated API key or webhook secret stays valid beside the new one.
    rotation_overlap_seconds: float = 24 * 3600
    # Delay before retrying when Meta is unavailable or rate limited.
    retry_delay_seconds: float = 30.0
    management_port: int = 8081
    management_token: str | None = None
    # How long a replica's peering record stays valid without renewal (kopf's peering lifetime).
    peering_lifetime_seconds: int = 60
    # The namespaces the operator serves (empty: all); management events never reach beyond them.
    namespaces: tuple[str, ...] = ()

    @classmethod
    def from_environment(cls) -> OperatorSettings:
        def required(name: str) -> str:
            value = os.environ.get(name)
            if not value:
                raise ValueError(f"{name} is not set: the operator needs the Meta app's id and secret")
            return value

        def number(name: str, default: float) -> float:
            raw = os.environ.get(name)
            try:
                return float(raw) if raw else default
            except ValueError:
                raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None

        defaults = cls(app_id="", app_secret="")
        return cls(
            app_id=required("WABAPLANE_META_APP_ID"),
            app_secret=required("WABAPLANE_META_APP_SECRET"),
            graph_url=os.environ.get("WABAPLANE_GRAPH_URL", defaults.graph_url),
            api_version=os.environ.get("WABAPLANE_GRAPH_API_VERSION", defaults.api_version),
            token_expiry_warning_seconds=number(
                "WABAPLANE_TOKEN_EXPIRY_WARNING", defaults.token_expiry_warning_seconds
            ),
            resync_seconds=number("WABAPLANE_RESYNC_INTERVAL", defaults.resync_seconds),
            pending_poll_seconds=number("WABAPLANE_PENDING_POLL_INTERVAL", defaults.pending_poll_seconds),
            rotation_overlap_seconds=number("WABAPLANE_ROTATION_OVERLAP", defaults.rotation_overlap_seconds),
            retry_delay_seconds=number("WABAPLANE_RETRY_DELAY", defaults.retry_delay_seconds),
            management_port=int(number("WABAPLANE_MANAGEMENT_PORT", defaults.management_port)),
            management_token=os.environ.get("WABAPLANE_MANAGEMENT_TOKEN") or None,
            peering_lifetime_seconds=int(
                number("WABAPLANE_PEERING_LIFETIME", defaults.peering_lifetime_seconds)
            ),
            namespaces=tuple(n for n in os.environ.get("WABAPLANE_NAMESPACES", "").split(",") if n),
        )
