"""Signatures: Meta's X-Hub-Signature-256 (inbound and re-signed outbound) and Standard Webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

HUB_PREFIX = "sha256="
STANDARD_PREFIX = "whsec_"


def hub_signature(body: bytes, secret: str) -> str:
    """Meta's scheme: HMAC-SHA256 of the raw body keyed with the secret's bytes, lowercase hex."""
    return HUB_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_hub_signature(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """True when the header matches any of the secrets (two during an app-secret rotation)."""
    if not header or not header.startswith(HUB_PREFIX):
        return False
    given = header[len(HUB_PREFIX) :].strip().lower().encode()
    matched = False
    for secret in secrets:
        expected = hub_signature(body, secret)[len(HUB_PREFIX) :].encode()
        # No early exit: the time taken does not reveal which secret matched.
        matched |= hmac.compare_digest(given, expected)
    return matched


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after `whsec_`."""
    return base64.b64decode(secret.removeprefix(STANDARD_PREFIX))


def standard_signature(message_id: str, timestamp: int, body: bytes, secrets: Iterable[str]) -> str:
    """`v1,<base64>` per secret, space-separated, over `{id}.{timestamp}.{body}`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(standard_key(secret), signed, hashlib.sha256).digest()).decode()
        for secret in secrets
    )
