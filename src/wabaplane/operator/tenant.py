"""Tenant: credentials, token scope and expiry, WABA subscription, API key and webhook secret."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import kopf

from wabaplane.api.common import GROUP, VERSION
from wabaplane.meta import errors
from wabaplane.operator import reasons
from wabaplane.operator.context import (
    Claim,
    Clients,
    StatusBook,
    check_claim,
    claim_of,
    clients,
    hand_over_claim,
    meta_errors,
)
from wabaplane.operator.kube import TENANT_LABEL

PLURAL = "tenants"
ROTATE_ANNOTATION = f"{GROUP}/rotate"
SECRET_TYPE_LABEL = f"{GROUP}/secret-type"
MANAGEMENT_SCOPE = "whatsapp_business_management"
MESSAGING_SCOPE = "whatsapp_business_messaging"
REQUIRED = [
    reasons.CONFLICT,
    reasons.CREDENTIALS_VALID,
    reasons.WEBHOOK_SUBSCRIBED,
    reasons.SECRETS_PROVISIONED,
]


def token_secret_name(tenant: str) -> str:
    return f"{tenant}-meta-token"


def api_key_secret_name(tenant: str) -> str:
    return f"{tenant}-api-key"


def webhook_secret_name(tenant: str) -> str:
    return f"{tenant}-webhook-secret"


def new_api_key() -> str:
    return "wpk_" + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """Standard Webhooks format: whsec_ followed by base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@kopf.index(GROUP, VERSION, PLURAL)
def waba_claims(body: kopf.Body, **_: Any) -> dict[str, Claim]:
    """Every Tenant's claim of a WABA in the cluster: the oldest claim wins, as for phone numbers.

    Two Tenants for one WABA would both receive its events and send from its numbers; the later
    one gets Conflict=True and goes no further (no token exchange, no subscription, no keys).
    """
    return {str(body["spec"]["wabaId"]): claim_of(body)}


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_tenant(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    await reconcile(body, patch, clients(memo), kwargs["waba_claims"])


@kopf.on.event(GROUP, VERSION, PLURAL)
async def hand_over_waba(type: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A deleted Tenant's WABA goes to the next Tenant claiming it, at once."""
    await hand_over_claim(type, body, str(body["spec"]["wabaId"]), kwargs["waba_claims"], clients(memo).kube)


@kopf.on.event(GROUP, VERSION, PLURAL, annotations={ROTATE_ANNOTATION: kopf.PRESENT})
async def rotate_on_request(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """`wabaplane.io/rotate: api-key|webhook-secret` rotates at once (annotations are not spec changes)."""
    if body["metadata"].get("deletionTimestamp"):
        return
    shared = clients(memo)
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    patch = kopf.Patch()
    book = StatusBook.of(body)
    await _provision_secrets(body, patch, book, shared)
    await asyncio.to_thread(
        shared.kube.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name,
        {"metadata": {"annotations": {ROTATE_ANNOTATION: None}}},
    )  # fmt: skip
    logger.info("rotated %s", body["metadata"]["annotations"][ROTATE_ANNOTATION])


@kopf.timer(GROUP, VERSION, PLURAL, interval=60.0, initial_delay=60.0, idle=30.0)
async def recheck_tenant(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    """Re-check token validity and expiry, and the subscription, periodically."""
    shared = clients(memo)
    checked = memo.setdefault("tenant_checks", {})
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if time.monotonic() - checked.get(key, 0.0) < shared.settings.resync_seconds:
        return
    checked[key] = time.monotonic()
    await reconcile(body, patch, shared, kwargs["waba_claims"])


async def reconcile(
    body: kopf.Body, patch: kopf.Patch, shared: Clients, claims: kopf.Index[str, Any]
) -> None:
    book = StatusBook.of(body)
    suspended = bool(body["spec"].get("suspended", False))
    book.fields["suspended"] = suspended
    try:
        if not check_claim(book, claims, "WABA", str(body["spec"]["wabaId"]), reasons.WABA_CLAIMED):
            return
        book.set(reasons.CONFLICT, False, reasons.OWNED, "no other Tenant claims this WABA")
        token = await _credentials(body, book, shared)
        await _check_token(body, token, book, shared)
        await _subscribe(body, token, book, shared)
        await _provision_secrets(body, patch, book, shared)
    finally:
        # On failure the first condition that is not True explains Ready.
        if suspended:
            book.summarise(REQUIRED, "suspended: sends are refused and deliveries held", reasons.SUSPENDED)
        else:
            book.summarise(REQUIRED, "the tenant is onboarded")
        book.write(patch)


async def _credentials(body: kopf.Body, book: StatusBook, shared: Clients) -> str:
    """The tenant's token, copied into (or exchanged into) the Secret the operator owns."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    credentials = body["spec"]["credentials"]
    owned = token_secret_name(name)
    labels = {TENANT_LABEL: name, SECRET_TYPE_LABEL: "token"}
    reference = credentials.get("tokenSecretRef")
    if reference:
        token = await shared.kube.secret_key(namespace, reference["name"], reference["key"])
        if not token:
            book.set(reasons.CREDENTIALS_VALID, False, reasons.SECRET_MISSING,
                     f"Secret {reference['name']} has no key {reference['key']}")  # fmt: skip
            raise kopf.TemporaryError("token Secret missing", delay=shared.settings.retry_delay_seconds)
        if await shared.kube.secret_key(namespace, owned, "token") != token:
            await shared.kube.write_secret(namespace, owned, {"token": token}, owner=body, labels=labels)
        book.fields["tokenSecretName"] = owned
        return token
    existing = await shared.kube.secret_key(namespace, owned, "token")
    if existing:
        book.fields["tokenSecretName"] = owned
        return existing  # the code was exchanged before; a code is single-use
    code_ref = credentials["embeddedSignup"]["codeSecretRef"]
    code = await shared.kube.secret_key(namespace, code_ref["name"], code_ref["key"])
    if not code:
        book.set(reasons.CREDENTIALS_VALID, False, reasons.SIGNUP_CODE_MISSING,
                 f"Secret {code_ref['name']} holds no Embedded Signup code under {code_ref['key']}; "
                 "put a fresh code there (codes are single-use and valid for about 30 seconds)")  # fmt: skip
        raise kopf.TemporaryError("no signup code", delay=shared.settings.retry_delay_seconds)
    try:
        with meta_errors(book, reasons.CREDENTIALS_VALID, shared.settings):
            try:
                exchanged = await shared.graph.exchange_code(code)
            except errors.InvalidParameter as error:
                book.set(reasons.CREDENTIALS_VALID, False, reasons.SIGNUP_CODE_REJECTED,
                         f"Meta refused the Embedded Signup code (expired or already used): {error.details or error}")  # fmt: skip
                raise kopf.TemporaryError(
                    "signup code rejected", delay=shared.settings.resync_seconds
                ) from None
    finally:
        # A code works once, whatever the outcome: never present it to Meta again.
        await shared.kube.set_secret_key(namespace, code_ref["name"], code_ref["key"], "")
    token = exchanged.access_token.get_secret_value()
    await shared.kube.write_secret(namespace, owned, {"token": token}, owner=body, labels=labels)
    kopf.info(
        body,
        reason="SignupCodeExchanged",
        message=f"exchanged the Embedded Signup code; token in Secret {owned}",
    )
    book.fields["tokenSecretName"] = owned
    return token


async def _check_token(body: kopf.Body, token: str, book: StatusBook, shared: Clients) -> None:
    waba_id = body["spec"]["wabaId"]
    with meta_errors(book, reasons.CREDENTIALS_VALID, shared.settings):
        info = await shared.graph.debug_token(token)
    if not info.is_valid:
        book.set(
            reasons.CREDENTIALS_VALID,
            False,
            reasons.TOKEN_INVALID,
            "Meta reports the token as invalid or revoked",
        )
        raise kopf.TemporaryError("token invalid", delay=shared.settings.resync_seconds)
    management, messaging = info.target_ids(MANAGEMENT_SCOPE), info.target_ids(MESSAGING_SCOPE)
    missing = [
        scope
        for scope, ids in ((MANAGEMENT_SCOPE, management), (MESSAGING_SCOPE, messaging))
        if waba_id not in ids
    ]
    if missing:
        book.set(reasons.CREDENTIALS_VALID, False, reasons.TOKEN_SCOPE_MISSING,
                 f"the token's {' and '.join(missing)} scope does not name WABA {waba_id}")  # fmt: skip
        raise kopf.TemporaryError("token scope missing", delay=shared.settings.retry_delay_seconds)
    others = sorted((set(management) | set(messaging)) - {waba_id})
    if others and not body["spec"]["credentials"].get("allowMultiWabaToken", False):
        book.set(reasons.CREDENTIALS_VALID, False, reasons.TOKEN_SCOPE_TOO_BROAD,
                 f"the token also reaches {len(others)} other WABA(s); use a token scoped to WABA {waba_id} only, "
                 "or set spec.credentials.allowMultiWabaToken: true")  # fmt: skip
        # A spec change (allowMultiWabaToken) fixes this, and kopf applies it only at the next retry.
        raise kopf.TemporaryError("token scope too broad", delay=shared.settings.retry_delay_seconds)
    book.set(
        reasons.CREDENTIALS_VALID,
        True,
        reasons.TOKEN_VALID,
        f"the token may manage and message WABA {waba_id}",
    )
    expires_at = info.expires_at or 0
    if expires_at <= 0:
        book.fields["tokenExpiresAt"] = None
        book.remove(reasons.TOKEN_EXPIRING)
        return
    moment = datetime.fromtimestamp(expires_at, UTC)
    book.fields["tokenExpiresAt"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    remaining = expires_at - time.time()
    if remaining < shared.settings.token_expiry_warning_seconds:
        book.set(reasons.TOKEN_EXPIRING, True, reasons.TOKEN_EXPIRES_SOON,
                 f"the token expires at {book.fields['tokenExpiresAt']}; replace it before then")  # fmt: skip
    else:
        book.remove(reasons.TOKEN_EXPIRING)


async def _subscribe(body: kopf.Body, token: str, book: StatusBook, shared: Clients) -> None:
    waba_id = body["spec"]["wabaId"]
    app_id = shared.settings.app_id
    with meta_errors(book, reasons.WEBHOOK_SUBSCRIBED, shared.settings):
        apps = await shared.graph.subscribed_apps(waba_id, token)
        if not any(app.app_id == app_id for app in apps):
            await shared.graph.subscribe_app(waba_id, token)
            apps = await shared.graph.subscribed_apps(waba_id, token)
    if not any(app.app_id == app_id for app in apps):
        book.set(reasons.WEBHOOK_SUBSCRIBED, False, reasons.SUBSCRIPTION_MISSING,
                 f"Meta accepted the subscription but does not list app {app_id} on WABA {waba_id}")  # fmt: skip
        raise kopf.TemporaryError("subscription not visible", delay=shared.settings.retry_delay_seconds)
    book.fields["subscribed"] = True
    book.set(
        reasons.WEBHOOK_SUBSCRIBED,
        True,
        reasons.SUBSCRIBED,
        f"app {app_id} receives WABA {waba_id}'s webhooks",
    )


async def _provision_secrets(body: kopf.Body, patch: kopf.Patch, book: StatusBook, shared: Clients) -> None:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    rotate = {
        part.strip() for part in body["metadata"].get("annotations", {}).get(ROTATE_ANNOTATION, "").split(",")
    }
    overlap = shared.settings.rotation_overlap_seconds
    for secret_name, key, kind, make in (
        (api_key_secret_name(name), "api-key", "api-key", new_api_key),
        (webhook_secret_name(name), "secret", "webhook-secret", new_webhook_secret),
    ):
        current = await shared.kube.secret(namespace, secret_name)
        labels = {TENANT_LABEL: name, SECRET_TYPE_LABEL: kind}
        if current is None or not current.get(key):
            await shared.kube.write_secret(namespace, secret_name, {key: make()}, owner=body, labels=labels)
            kopf.info(body, reason="SecretCreated", message=f"created Secret {secret_name}")
        elif kind in rotate:
            expires = datetime.fromtimestamp(time.time() + overlap, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            data = {key: make(), f"previous-{key}": current[key], "previous-expires-at": expires}
            await shared.kube.write_secret(namespace, secret_name, data, owner=body, labels=labels)
            kopf.info(body, reason="SecretRotated",
                      message=f"rotated {kind} in Secret {secret_name}; the previous value stays valid until {expires}")  # fmt: skip
    if rotate - {""}:
        patch.metadata.setdefault("annotations", {})[ROTATE_ANNOTATION] = None
    book.fields["apiKeySecretName"] = api_key_secret_name(name)
    book.fields["webhookSecretName"] = webhook_secret_name(name)
    book.set(
        reasons.SECRETS_PROVISIONED, True, reasons.PROVISIONED, "the API key and webhook secret are in place"
    )


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete_tenant(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Unsubscribe the app from the WABA; garbage collection then takes the owned Secrets."""
    shared = clients(memo)
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    token = await shared.kube.secret_key(namespace, token_secret_name(name), "token")
    if not token or not (body.get("status") or {}).get("subscribed"):
        return
    book = StatusBook.of(body)
    try:
        with meta_errors(book, reasons.WEBHOOK_SUBSCRIBED, shared.settings):
            try:
                await shared.graph.unsubscribe_app(body["spec"]["wabaId"], token)
            except (errors.AuthenticationError, errors.PermissionDenied, errors.ObjectNotFound):
                return  # the token can no longer reach the WABA: there is nothing left to undo
    except kopf.TemporaryError:
        book.set(reasons.READY, False, reasons.DELETION_BLOCKED,
                 "cannot unsubscribe from the WABA while Meta is unavailable; retrying. To give up, remove the "
                 "finalizer wabaplane.io/cleanup (see the README)")  # fmt: skip
        book.write(patch)
        raise
