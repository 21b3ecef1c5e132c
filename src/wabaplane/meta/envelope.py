"""Meta's error envelope and the codes behind it (reference §3), shared by the emulator and the gateway."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

# code -> (title, default HTTP status). HTTP statuses follow the older copy of Meta's table
# (reference §3.2); sources disagree, so they are configurable per code in EmulatorSettings.
CATALOGUE: dict[int, tuple[str, int]] = {
    0: ("AuthException", 401),
    1: ("API Unknown", 400),
    2: ("API Service", 503),
    3: ("API Method", 500),
    4: ("Application request limit reached", 429),
    10: ("Permission denied", 403),
    33: ("Parameter value is not valid", 400),
    100: ("Invalid parameter", 400),
    190: ("Access token has expired", 401),
    200: ("Permissions error", 403),
    80007: ("Rate limit issues", 429),
    130429: ("Rate limit hit", 429),
    131000: ("Something went wrong", 500),
    131008: ("Required parameter is missing", 400),
    131009: ("Parameter value is not valid", 400),
    131016: ("Service unavailable", 500),
    131021: ("Recipient cannot be sender", 400),
    131026: ("Message undeliverable", 400),
    131031: ("Account has been locked", 403),
    131047: ("Re-engagement message", 400),
    131051: ("Unsupported message type", 400),
    131056: ("(Business Account, Consumer Account) pair rate limit hit", 429),
    132000: ("Number of parameters does not match the expected number of params", 400),
    132001: ("Template name does not exist in the translation", 404),
    132015: ("Template is Paused", 400),
    132016: ("Template is Disabled", 400),
    133005: ("Two step verification PIN Mismatch", 400),
    133010: ("Phone number Not Registered", 400),
    133016: ("Account register deregister rate limit exceeded", 429),
}


@dataclass
class GraphError(Exception):
    """An error the emulator answers in Meta's envelope."""

    code: int
    details: str
    subcode: int | None = None
    error_type: str = "OAuthException"
    message: str | None = None
    http_status: int | None = None
    retry_after: int | None = None

    def title(self) -> str:
        return CATALOGUE.get(self.code, ("Unknown error", 400))[0]

    def status(self, overrides: dict[int, int]) -> int:
        if self.http_status is not None:
            return self.http_status
        return overrides.get(self.code, CATALOGUE.get(self.code, ("", 400))[1])

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message or f"(#{self.code}) {self.title()}",
            "type": self.error_type,
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details},
            "fbtrace_id": fbtrace_id(),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        return {"error": error}


def fbtrace_id() -> str:
    return "A" + secrets.token_urlsafe(16)[:22]


def not_found(object_id: str, method: str) -> GraphError:
    """Meta's answer for an id that does not exist or that the token may not see."""
    return GraphError(
        code=100,
        subcode=33,
        error_type="GraphMethodException",
        details=f"Object with ID '{object_id}' does not exist",
        message=(
            f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be "
            "loaded due to missing permissions, or does not support this operation. Please read the Graph API "
            "documentation at https://developers.facebook.com/docs/graph-api"
        ),
    )


def invalid_token(details: str = "Error validating access token: the token is invalid") -> GraphError:
    return GraphError(code=190, details=details, message=details)


def missing_parameter(name: str) -> GraphError:
    return GraphError(code=100, details=f"The parameter {name} is required")


def invalid_parameter(details: str) -> GraphError:
    return GraphError(code=100, details=details)
