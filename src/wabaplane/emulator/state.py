"""The emulator's in-memory world: businesses, WABAs, numbers, tokens, templates and messages."""

from __future__ import annotations

import base64
import random
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from wabaplane.ratelimit import SlidingWindow, TokenBucket


def digits(value: str) -> str:
    return re.sub(r"\D", "", value)


@dataclass
class Business:
    id: str
    name: str


@dataclass
class Subscription:
    override_callback_uri: str | None = None
    verify_token: str | None = None


@dataclass
class Waba:
    id: str
    business_id: str
    name: str
    currency: str = "USD"
    timezone_id: str = "1"
    subscriptions: dict[str, Subscription] = field(default_factory=dict)


@dataclass
class Phone:
    id: str
    waba_id: str
    display_phone_number: str  # digits only; API responses format it
    verified_name: str
    country_code: str = "1"
    quality_rating: str = "GREEN"
    messaging_limit: str = "TIER_250"
    throughput_level: str = "STANDARD"
    name_status: str = "APPROVED"
    code_verification_status: str = "VERIFIED"
    status: str = "CONNECTED"
    account_mode: str = "LIVE"
    platform_type: str = "CLOUD_API"
    registered: bool = False
    pin: str | None = None
    override_callback_uri: str | None = None
    override_verify_token: str | None = None
    registration_calls: deque[float] = field(default_factory=deque)
    onboarded_at: float = field(default_factory=time.time)

    def formatted_number(self) -> str:
        """As Graph responses show it, e.g. +1 555-096-7852."""
        number = self.display_phone_number
        local = number[len(self.country_code) :] if number.startswith(self.country_code) else number
        if len(local) == 10:
            return f"+{self.country_code} {local[:3]}-{local[3:6]}-{local[6:]}"
        return f"+{number}"


@dataclass
class Token:
    value: str
    kind: str  # SYSTEM_USER | BUSINESS_INTEGRATION | USER
    user_id: str
    scopes: list[str]
    management_wabas: list[str]
    messaging_wabas: list[str]
    issued_at: int
    expires_at: int  # 0 means never
    revoked: bool = False

    def valid(self, now: float) -> bool:
        return not self.revoked and (self.expires_at == 0 or now < self.expires_at)


@dataclass
class SignupCode:
    code: str
    business_id: str
    waba_ids: list[str]
    expires_at: float
    expires_in: int | None
    used: bool = False


@dataclass
class Template:
    id: str
    waba_id: str
    name: str
    language: str
    category: str
    parameter_format: str
    components: list[dict[str, Any]]
    status: str = "PENDING"
    rejected_reason: str = "NONE"
    quality_score: str = "UNKNOWN"
    edits: list[float] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)

    def as_graph(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "parameter_format": self.parameter_format,
            "components": self.components,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "id": self.id,
        }


@dataclass
class SentMessage:
    wamid: str
    phone_id: str
    to: str
    wa_id: str
    type: str
    body: dict[str, Any]
    timestamp: int
    statuses: list[str] = field(default_factory=list)


class World:
    """Everything the emulator knows, with id generation and lookups."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.businesses: dict[str, Business] = {}
        self.wabas: dict[str, Waba] = {}
        self.phones: dict[str, Phone] = {}
        self.tokens: dict[str, Token] = {}
        self.codes: dict[str, SignupCode] = {}
        self.templates: dict[str, Template] = {}
        self.messages: dict[str, SentMessage] = {}
        self.inbound: dict[str, dict[str, Any]] = {}
        # (phone id, customer wa_id) -> time of the customer's last message
        self.windows: dict[tuple[str, str], float] = {}
        # (waba id, template name) -> when an APPROVED template of that name was deleted
        self.deleted_names: dict[tuple[str, str], float] = {}
        self.pair_buckets: dict[tuple[str, str], TokenBucket] = {}
        self.number_windows: dict[str, SlidingWindow] = {}
        self.management_windows: dict[str, SlidingWindow] = {}
        self.template_create_windows: dict[str, SlidingWindow] = {}

    def new_id(self) -> str:
        return str(self.rng.randrange(10**14, 10**16))

    def new_token_value(self) -> str:
        return "EAA" + "".join(
            self.rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=160)
        )

    def new_wamid(self) -> str:
        return "wamid." + base64.b64encode(b"HBgL" + self.rng.randbytes(30)).decode()

    def new_code(self) -> str:
        return "AQ" + secrets.token_urlsafe(48)

    def phone_by_display(self, waba_id: str, display: str) -> Phone | None:
        wanted = digits(display)
        return next(
            (p for p in self.phones.values() if p.waba_id == waba_id and p.display_phone_number == wanted),
            None,
        )

    def waba_templates(self, waba_id: str) -> list[Template]:
        return [t for t in self.templates.values() if t.waba_id == waba_id]
