"""The seed: businesses, WABAs, numbers, tokens and signup codes to start the emulator with.

The same document is accepted from a YAML file (`--seed`) and by `POST /_emulator/seed`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from wabaplane.emulator.engine import Emulator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedPhone(_Strict):
    id: str | None = Field(default=None, pattern=r"^[0-9]+$")
    display_phone_number: str = Field(pattern=r"^\+?[0-9 ()-]+$")
    verified_name: str
    country_code: str = "1"
    quality_rating: Literal["GREEN", "YELLOW", "RED", "UNKNOWN"] = "GREEN"
    messaging_limit: str = "TIER_250"
    throughput_level: Literal["STANDARD", "HIGH", "NOT_APPLICABLE"] = "STANDARD"
    name_status: str = "APPROVED"
    registered: bool = False
    pin: str | None = Field(default=None, pattern=r"^[0-9]{6}$")


class SeedWaba(_Strict):
    id: str | None = Field(default=None, pattern=r"^[0-9]+$")
    name: str
    subscribed: bool = Field(default=False, description="Whether the app starts subscribed to the WABA.")
    phone_numbers: list[SeedPhone] = Field(default_factory=list)


class SeedBusiness(_Strict):
    id: str | None = Field(default=None, pattern=r"^[0-9]+$")
    name: str
    wabas: list[SeedWaba] = Field(default_factory=list)


class SeedToken(_Strict):
    value: str | None = Field(default=None, description="The token string; generated when unset.")
    kind: Literal["SYSTEM_USER", "BUSINESS_INTEGRATION", "USER"] = "SYSTEM_USER"
    wabas: list[str] = Field(description="WABA ids the token may manage and message.")
    expires_in: int | None = Field(default=None, ge=1, description="Seconds; unset: never expires.")


class SeedSignupCode(_Strict):
    code: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{8,256}$",
        description="The code itself, so that a Secret written beforehand can name it; generated when unset.",
    )
    business: str = Field(description="The business id.")
    wabas: list[str]
    expires_in: int | None = Field(default=None, ge=1, description="Lifetime of the token it yields.")
    valid_for_seconds: float | None = Field(
        default=None, gt=0, description="How long the code itself may be exchanged; unset: Meta's 30 s."
    )


class Seed(_Strict):
    businesses: list[SeedBusiness] = Field(default_factory=list)
    tokens: list[SeedToken] = Field(default_factory=list)
    signup_codes: list[SeedSignupCode] = Field(default_factory=list)


SEED_KEY = "seed.yaml"


def load_file(path: Path) -> Seed:
    """A seed document, or a ConfigMap holding one under the key `seed.yaml`."""
    document = yaml.safe_load(path.read_text()) or {}
    if isinstance(document, dict) and document.get("kind") == "ConfigMap":
        data = document.get("data") or {}
        if SEED_KEY not in data:
            raise ValueError(f"the ConfigMap has no {SEED_KEY!r} key")
        document = yaml.safe_load(data[SEED_KEY]) or {}
    return Seed.model_validate(document)


def apply(emulator: Emulator, seed: Seed) -> dict[str, Any]:
    """Create everything in the seed; return the ids, tokens and codes created."""
    created: dict[str, Any] = {
        "businesses": [],
        "wabas": [],
        "phone_numbers": [],
        "tokens": [],
        "signup_codes": [],
    }
    for business_seed in seed.businesses:
        business = emulator.add_business(business_seed.id, business_seed.name)
        created["businesses"].append(business.id)
        for waba_seed in business_seed.wabas:
            waba = emulator.add_waba(business.id, waba_seed.id, waba_seed.name, waba_seed.subscribed)
            created["wabas"].append(waba.id)
            for phone_seed in waba_seed.phone_numbers:
                phone = emulator.add_phone(waba.id, **phone_seed.model_dump())
                created["phone_numbers"].append(phone.id)
    for token_seed in seed.tokens:
        unknown = [w for w in token_seed.wabas if w not in emulator.world.wabas]
        if unknown:
            raise ValueError(f"token names unknown WABAs: {unknown}")
        token = emulator.issue_token(
            kind=token_seed.kind,
            waba_ids=token_seed.wabas,
            expires_in=token_seed.expires_in,
            value=token_seed.value,
        )
        created["tokens"].append(token.value)
    for code_seed in seed.signup_codes:
        created["signup_codes"].append(
            emulator.issue_signup_code(
                code_seed.business,
                code_seed.wabas,
                code_seed.expires_in,
                code_seed.valid_for_seconds,
                value=code_seed.code,
            )
        )
    return created
