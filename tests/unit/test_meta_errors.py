"""Graph errors are classified by Meta's error.code, never by HTTP status."""

from __future__ import annotations

import pytest

from wabaplane.meta import errors


def envelope(code: int, subcode: int | None = None) -> dict[str, object]:
    error: dict[str, object] = {"message": f"(#{code}) title", "type": "OAuthException", "code": code,
                                "error_data": {"details": "details"}, "fbtrace_id": "Atrace"}  # fmt: skip
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


@pytest.mark.parametrize(
    ("code", "subcode", "cls"),
    [
        (190, None, errors.AuthenticationError),
        (0, None, errors.AuthenticationError),
        (10, None, errors.PermissionDenied),
        (200, None, errors.PermissionDenied),
        (299, None, errors.PermissionDenied),
        (100, 33, errors.ObjectNotFound),
        (100, None, errors.InvalidParameter),
        (131008, None, errors.InvalidParameter),
        (4, None, errors.RateLimited),
        (80007, None, errors.RateLimited),
        (130429, None, errors.RateLimited),
        (133016, None, errors.RateLimited),
        (131056, None, errors.PairRateLimited),
        (131047, None, errors.OutsideCustomerServiceWindow),
        (132001, None, errors.TemplateError),
        (132000, None, errors.TemplateError),
        (133005, None, errors.RegistrationError),
        (133010, None, errors.RegistrationError),
        (131026, None, errors.UndeliverableError),
        (1, None, errors.TransientError),
        (2, None, errors.TransientError),
        (131000, None, errors.TransientError),
        (133004, None, errors.TransientError),
    ],
)
@pytest.mark.parametrize("http_status", [400, 403, 429, 500])
def test_classification_ignores_http_status(
    code: int, subcode: int | None, cls: type, http_status: int
) -> None:
    error = errors.from_response(http_status, envelope(code, subcode), retry_after=3.0)
    assert type(error) is cls
    assert error.code == code
    assert error.details == "details"
    assert error.fbtrace_id == "Atrace"
    assert error.retry_after == 3.0


def test_an_unknown_code_falls_back_on_the_http_status() -> None:
    assert type(errors.from_response(400, envelope(999999))) is errors.MetaError
    assert type(errors.from_response(503, envelope(999999))) is errors.TransientError


def test_a_body_without_an_envelope() -> None:
    assert isinstance(errors.from_response(502, "<html>bad gateway</html>"), errors.TransientError)
    assert type(errors.from_response(404, None)) is errors.MetaError


def test_template_creation_errors_keep_the_user_message() -> None:
    body = {"error": {"message": "Invalid parameter", "type": "OAuthException", "code": 100, "error_subcode": 2388299,
                      "error_user_title": "Leading or trailing params", "error_user_msg": "Move the parameter",
                      "error_data": "a plain string", "fbtrace_id": "Ax"}}  # fmt: skip
    error = errors.from_response(400, body)
    assert error.subcode == 2388299
    assert error.user_message == "Move the parameter"
    assert error.details == "a plain string"
