"""Graph API errors, classified by Meta's `error.code` (never by HTTP status, which sources disagree on).

Every error keeps Meta's code, subcode, message, details and fbtrace_id, so callers can report them;
none of them ever holds the access token.
"""

from __future__ import annotations

from typing import Any


class MetaError(Exception):
    """An error answered by the Graph API, or a failure to reach it."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        error_type: str | None = None,
        details: str | None = None,
        fbtrace_id: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        user_title: str | None = None,
        user_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.error_type = error_type
        self.details = details
        self.fbtrace_id = fbtrace_id
        self.http_status = http_status
        self.retry_after = retry_after
        self.user_title = user_title
        self.user_message = user_message

    def __str__(self) -> str:
        parts = [self.message]
        if self.details and self.details not in self.message:
            parts.append(self.details)
        if self.fbtrace_id:
            parts.append(f"fbtrace_id={self.fbtrace_id}")
        return " | ".join(parts)


class TransientError(MetaError):
    """Meta is temporarily unable to answer (codes 1, 2, 131000, 131016, 133004, HTTP 5xx). Retried."""


class MetaUnreachable(TransientError):
    """The Graph API could not be reached at all (connection error or timeout). Retried."""


class AuthenticationError(MetaError):
    """The token is expired, revoked or invalid (codes 0, 190)."""


class PermissionDenied(MetaError):
    """The token lacks a permission or access to this object (codes 3, 10, 200-299, 131005)."""


class ObjectNotFound(MetaError):
    """The object does not exist or the token may not see it (code 100 with subcode 33, code 33)."""


class InvalidParameter(MetaError):
    """A request parameter is missing or invalid (codes 100, 131008, 131009, 131021, 131051, 132018)."""


class RateLimited(MetaError):
    """An API call rate limit was hit (codes 4, 80007, 130429, 133016). `retry_after` hints when to retry."""


class PairRateLimited(RateLimited):
    """Too many messages to the same user (code 131056)."""


class OutsideCustomerServiceWindow(MetaError):
    """More than 24 h since the customer last wrote: only templates may be sent (code 131047)."""


class TemplateError(MetaError):
    """The template is missing, unapproved, paused, disabled or its parameters do not match (1320xx)."""


class RegistrationError(MetaError):
    """Phone registration failed: wrong PIN, not registered, locked (131031, 133xxx except 133004/133016)."""


class UndeliverableError(MetaError):
    """The message cannot reach the recipient (131026, 131049, 131050, 130472, 137000)."""


_BY_CODE: dict[int, type[MetaError]] = {
    0: AuthenticationError,
    190: AuthenticationError,
    3: PermissionDenied,
    10: PermissionDenied,
    131005: PermissionDenied,
    33: ObjectNotFound,
    100: InvalidParameter,
    131008: InvalidParameter,
    131009: InvalidParameter,
    131021: InvalidParameter,
    131051: InvalidParameter,
    132018: InvalidParameter,
    4: RateLimited,
    80007: RateLimited,
    130429: RateLimited,
    133016: RateLimited,
    131056: PairRateLimited,
    131047: OutsideCustomerServiceWindow,
    1: TransientError,
    2: TransientError,
    131000: TransientError,
    131016: TransientError,
    133004: TransientError,
    131057: TransientError,
    131031: RegistrationError,
    131026: UndeliverableError,
    131049: UndeliverableError,
    131050: UndeliverableError,
    130472: UndeliverableError,
    137000: UndeliverableError,
}


def error_class(
    code: int | None, subcode: int | None = None, http_status: int | None = None
) -> type[MetaError]:
    if code is not None:
        if code == 100 and subcode == 33:
            return ObjectNotFound
        if code in _BY_CODE:
            return _BY_CODE[code]
        if 200 <= code <= 299:
            return PermissionDenied
        if 132000 <= code <= 132999:
            return TemplateError
        if 133000 <= code <= 133999:
            return RegistrationError
    if http_status is not None and http_status >= 500:
        return TransientError
    return MetaError


def from_response(http_status: int, body: Any, retry_after: float | None = None) -> MetaError:
    """The exception for a non-2xx Graph response (its JSON body, or whatever it was)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        cls = TransientError if http_status >= 500 else MetaError
        return cls(
            f"Graph API answered HTTP {http_status} without an error envelope", http_status=http_status
        )
    code = error.get("code") if isinstance(error.get("code"), int) else None
    subcode = error.get("error_subcode") if isinstance(error.get("error_subcode"), int) else None
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else data if isinstance(data, str) else None
    cls = error_class(code, subcode, http_status)
    return cls(
        str(error.get("message") or f"Graph API error {code}"),
        code=code,
        subcode=subcode,
        error_type=error.get("type"),
        details=details,
        fbtrace_id=error.get("fbtrace_id"),
        http_status=http_status,
        retry_after=retry_after,
        user_title=error.get("error_user_title"),
        user_message=error.get("error_user_msg"),
    )
