"""PhoneNumber: prove the number is in the tenant's WABA, register it once, mirror Meta's view in status."""

from __future__ import annotations

import time
from typing import Any

import kopf

from wabaplane.api.common import GROUP, VERSION
from wabaplane.meta import errors
from wabaplane.meta.models import PhoneNumberInfo
from wabaplane.operator import conditions, reasons
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
from wabaplane.operator.tenant import token_secret_name

PLURAL = "phonenumbers"
REQUIRED = [reasons.CONFLICT, reasons.TENANT_READY, reasons.OWNERSHIP_PROVEN, reasons.REGISTERED]
# Registration is limited to 10 calls per 72 h: a failed attempt is never repeated for the same
# spec generation; this annotation records the generation last attempted.
REGISTRATION_ATTEMPT = f"{GROUP}/registration-attempted-generation"


@kopf.index(GROUP, VERSION, PLURAL)
def phone_claims(body: kopf.Body, **_: Any) -> dict[str, Claim]:
    """Every claim of a phone number id in the cluster: the oldest claim wins (see claim_of)."""
    return {str(body["spec"]["phoneNumberId"]): claim_of(body)}


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_phone_number(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    await reconcile(body, patch, clients(memo), kwargs["phone_claims"])


@kopf.on.event(GROUP, VERSION, PLURAL)
async def hand_over_number(type: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A deleted PhoneNumber's number goes to the next PhoneNumber claiming it, at once."""
    await hand_over_claim(
        type, body, str(body["spec"]["phoneNumberId"]), kwargs["phone_claims"], clients(memo).kube
    )


@kopf.timer(GROUP, VERSION, PLURAL, interval=60.0, initial_delay=60.0, idle=30.0)
async def refresh_phone_number(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    shared = clients(memo)
    checked = memo.setdefault("phone_checks", {})
    key = body["metadata"]["uid"]
    if time.monotonic() - checked.get(key, 0.0) < shared.settings.resync_seconds:
        return
    checked[key] = time.monotonic()
    await reconcile(body, patch, shared, kwargs["phone_claims"])


async def tenant_token(body: kopf.Body, book: StatusBook, shared: Clients) -> tuple[dict[str, Any], str]:
    """The Ready tenant this object references, and its token; else TenantNotReady and a retry."""
    namespace = body["metadata"]["namespace"]
    tenant_name = body["spec"]["tenantRef"]["name"]
    tenant = await shared.kube.custom_object("tenants", namespace, tenant_name)
    ready = tenant is not None and conditions.is_true(
        (tenant.get("status") or {}).get("conditions") or [], reasons.READY
    )
    token = (
        await shared.kube.secret_key(namespace, token_secret_name(tenant_name), "token") if ready else None
    )
    if tenant is None or not ready or not token:
        state = "does not exist" if tenant is None else "is not Ready"
        book.set(
            reasons.TENANT_READY,
            False,
            reasons.TENANT_NOT_READY,
            f"Tenant {tenant_name} {state}; waiting for it",
        )
        raise kopf.TemporaryError("tenant not ready", delay=shared.settings.retry_delay_seconds)
    book.set(reasons.TENANT_READY, True, reasons.RECONCILED, f"Tenant {tenant_name} is Ready")
    return tenant, token


async def reconcile(
    body: kopf.Body, patch: kopf.Patch, shared: Clients, claims: kopf.Index[str, Any]
) -> None:
    book = StatusBook.of(body)
    try:
        phone_id = str(body["spec"]["phoneNumberId"])
        if not check_claim(book, claims, "phone number", phone_id, reasons.NUMBER_CLAIMED):
            kopf.warn(
                body, reason=reasons.NUMBER_CLAIMED, message="another PhoneNumber already claims this number"
            )
            return
        book.set(reasons.CONFLICT, False, reasons.OWNED, "no other PhoneNumber claims this number")
        tenant, token = await tenant_token(body, book, shared)
        waba_id = tenant["spec"]["wabaId"]
        with meta_errors(book, reasons.OWNERSHIP_PROVEN, shared.settings):
            numbers = await shared.graph.phone_numbers(waba_id, token)
        info = next((n for n in numbers if n.id == phone_id), None)
        if info is None:
            book.set(reasons.OWNERSHIP_PROVEN, False, reasons.NOT_IN_WABA,
                     f"phone number id {phone_id} is not in the tenant's WABA {waba_id} according to Meta")  # fmt: skip
            raise kopf.TemporaryError("number not in WABA", delay=shared.settings.resync_seconds)
        book.set(reasons.OWNERSHIP_PROVEN, True, reasons.OWNED, f"Meta lists the number in WABA {waba_id}")
        with meta_errors(book, reasons.OWNERSHIP_PROVEN, shared.settings):
            info = await shared.graph.phone_number(phone_id, token)
        _mirror(book, info)
        await _register(body, patch, book, shared, token)
    finally:
        book.summarise(REQUIRED, "the number is proven, registered and routed to its tenant")
        book.write(patch)


def _mirror(book: StatusBook, info: PhoneNumberInfo) -> None:
    book.fields.update(
        {
            "displayPhoneNumber": info.display_phone_number,
            "verifiedName": info.verified_name,
            "nameStatus": info.name_status,
            "qualityRating": info.quality_rating,
            "messagingLimit": info.messaging_limit,
            "throughputLevel": info.throughput.level if info.throughput else None,
            "codeVerificationStatus": info.code_verification_status,
        }
    )


async def _register(
    body: kopf.Body, patch: kopf.Patch, book: StatusBook, shared: Clients, token: str
) -> None:
    status = body.get("status") or {}
    reference = (body["spec"].get("registration") or {}).get("pinSecretRef")
    if reference is None:
        book.fields["registered"] = status.get("registered")
        book.set(reasons.REGISTERED, True, reasons.REGISTRATION_NOT_REQUESTED,
                 "no registration PIN given: the number is expected to be registered already")  # fmt: skip
        return
    generation = str(book.generation)
    if status.get("registered"):
        book.fields["registered"] = True
        book.set(reasons.REGISTERED, True, reasons.REGISTRATION_SUCCEEDED, "registered on the Cloud API")
        return
    attempted = body["metadata"].get("annotations", {}).get(REGISTRATION_ATTEMPT)
    if attempted == generation and not status.get("registered"):
        return  # failed before for this spec: keep the condition, do not spend another of the 10 attempts
    namespace = body["metadata"]["namespace"]
    pin = await shared.kube.secret_key(namespace, reference["name"], reference["key"])
    if not pin:
        book.set(reasons.REGISTERED, False, reasons.SECRET_MISSING,
                 f"Secret {reference['name']} has no key {reference['key']} with the PIN")  # fmt: skip
        raise kopf.TemporaryError("PIN missing", delay=shared.settings.retry_delay_seconds)
    patch.metadata.setdefault("annotations", {})[REGISTRATION_ATTEMPT] = generation
    try:
        with meta_errors(book, reasons.REGISTERED, shared.settings):
            try:
                await shared.graph.register(str(body["spec"]["phoneNumberId"]), token, pin)
            except errors.RegistrationError as error:
                book.fields["registered"] = False
                book.set(reasons.REGISTERED, False, reasons.REGISTRATION_FAILED,
                         f"Meta refused the registration ({error.code}): {error.details or error}. Fix the PIN "
                         f"Secret, then remove the annotation {REGISTRATION_ATTEMPT} to try again (Meta allows "
                         "10 attempts per 72 hours)")  # fmt: skip
                return
    except kopf.TemporaryError:
        # Not refused, just not done (Meta unavailable or rate limited): allow the retry.
        patch.metadata["annotations"][REGISTRATION_ATTEMPT] = None
        raise
    book.fields["registered"] = True
    book.set(reasons.REGISTERED, True, reasons.REGISTRATION_SUCCEEDED, "registered on the Cloud API")
