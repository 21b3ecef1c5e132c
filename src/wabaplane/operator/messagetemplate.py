"""MessageTemplate: create it on the tenant's WABA, edit within Meta's rules, mirror the review."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import kopf

from wabaplane.api.common import GROUP, VERSION
from wabaplane.meta import errors
from wabaplane.meta.models import TemplateInfo
from wabaplane.operator import reasons
from wabaplane.operator.context import Clients, StatusBook, clients, meta_errors
from wabaplane.operator.phonenumber import tenant_token
from wabaplane.operator.tenant import token_secret_name

PLURAL = "messagetemplates"
# The spec generation last sent to Meta as an edit: an edit Meta refused is not retried until the
# spec changes again (edit limits are per day and per 30 days; a hot loop would only burn them).
EDIT_ATTEMPT = f"{GROUP}/edit-attempted-generation"
TIMER_INTERVAL = float(os.environ.get("WABAPLANE_TIMER_INTERVAL", "10"))
STATUS_REASONS = {
    "APPROVED": reasons.APPROVED,
    "PENDING": reasons.PENDING_REVIEW,
    "REJECTED": reasons.REJECTED,
    "PAUSED": reasons.PAUSED,
    "DISABLED": reasons.DISABLED,
}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _to_meta(value: Any) -> Any:
    """The spec's camelCase keys as Meta's snake_case (values untouched)."""
    if isinstance(value, dict):
        return {_snake(key): _to_meta(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_meta(item) for item in value]
    return value


def meta_template(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": spec["name"],
        "language": spec["language"],
        "category": spec["category"],
        "parameter_format": spec.get("parameterFormat", "POSITIONAL"),
        "components": _to_meta(spec["components"]),
    }


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_template(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    await reconcile(body, patch, clients(memo), edit=True)


@kopf.timer(
    GROUP, VERSION, PLURAL, interval=TIMER_INTERVAL, initial_delay=TIMER_INTERVAL, idle=TIMER_INTERVAL
)
async def refresh_template(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Poll a template under review; resync the others now and then to notice drift."""
    status = body.get("status") or {}
    if not status.get("templateId"):
        return  # creation belongs to the event handlers, never to a timer
    shared = clients(memo)
    checked = memo.setdefault("template_checks", {})
    key = body["metadata"]["uid"]
    every = (
        shared.settings.pending_poll_seconds
        if status.get("templateStatus") == "PENDING"
        else shared.settings.resync_seconds
    )
    if time.monotonic() - checked.get(key, 0.0) < every:
        return
    checked[key] = time.monotonic()
    await reconcile(body, patch, shared, edit=False)


async def reconcile(body: kopf.Body, patch: kopf.Patch, shared: Clients, *, edit: bool) -> None:
    book = StatusBook.of(body)
    status = body.get("status") or {}
    try:
        tenant, token = await tenant_token(body, book, shared)
        waba_id = tenant["spec"]["wabaId"]
        wanted = meta_template(body["spec"])
        template_id = status.get("templateId")
        refused = _synced_reason(book) == reasons.EDIT_NOT_ALLOWED and (
            body["metadata"].get("annotations", {}).get(EDIT_ATTEMPT) == str(book.generation)
        )
        with meta_errors(book, reasons.TEMPLATE_SYNCED, shared.settings):
            if not template_id:
                template_id = await _create_or_adopt(body, book, shared, waba_id, token, wanted)
            elif edit and status.get("observedGeneration") != book.generation:
                refused = await _edit(body, patch, book, shared, token, template_id, wanted, status)
            try:
                info = await shared.graph.template(template_id, token)
            except errors.ObjectNotFound:
                book.fields["templateId"] = None
                book.set(reasons.TEMPLATE_SYNCED, False, reasons.DRIFTED,
                         "the template was deleted at Meta (e.g. in WhatsApp Manager); it will be created again")  # fmt: skip
                raise kopf.TemporaryError(
                    "template gone at Meta", delay=shared.settings.retry_delay_seconds
                ) from None
        _mirror(book, info)
        if refused:
            pass  # keep saying why the spec is not at Meta; the next spec change tries again
        elif info.status != "PENDING" and _normalise(info.components) != _normalise(wanted["components"]):
            book.set(reasons.TEMPLATE_SYNCED, False, reasons.DRIFTED,
                     "the template at Meta differs from the spec (changed in WhatsApp Manager?); change the spec "
                     "to edit it, or recreate the MessageTemplate")  # fmt: skip
        else:
            book.set(
                reasons.TEMPLATE_SYNCED, True, reasons.RECONCILED, f"template {template_id} matches the spec"
            )
    finally:
        _summarise(book)
        book.write(patch)


def _synced_reason(book: StatusBook) -> str | None:
    condition = next((c for c in book.current if c["type"] == reasons.TEMPLATE_SYNCED), None)
    return condition["reason"] if condition else None


def _normalise(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**c, "type": str(c.get("type", "")).upper()} for c in components]


async def _create_or_adopt(
    body: kopf.Body, book: StatusBook, shared: Clients, waba_id: str, token: str, wanted: dict[str, Any]
) -> str:
    """Adopt the template if Meta already has it (a restart after create), else create it, once."""
    existing = [t for t in await shared.graph.templates(waba_id, token, name=wanted["name"])
                if t.language == wanted["language"]]  # fmt: skip
    if existing:
        book.fields["templateId"] = existing[0].id
        return existing[0].id
    created = await shared.graph.create_template(waba_id, token, wanted)
    kopf.info(
        body,
        reason="TemplateCreated",
        message=f"created template {created.id} on WABA {waba_id}; review pending",
    )
    book.fields["templateId"] = created.id
    return created.id


async def _edit(
    body: kopf.Body,
    patch: kopf.Patch,
    book: StatusBook,
    shared: Clients,
    token: str,
    template_id: str,
    wanted: dict[str, Any],
    status: dict[str, Any],
) -> bool:
    """Send the spec as an edit, once per generation; True when Meta refused it (now or before)."""
    generation = str(book.generation)
    if body["metadata"].get("annotations", {}).get(EDIT_ATTEMPT) == generation:
        return _synced_reason(book) == reasons.EDIT_NOT_ALLOWED
    patch.metadata.setdefault("annotations", {})[EDIT_ATTEMPT] = generation
    category = wanted["category"] if wanted["category"] != status.get("category") else None
    try:
        await shared.graph.edit_template(
            template_id, token, components=wanted["components"], category=category
        )
    except errors.InvalidParameter as error:
        book.set(reasons.TEMPLATE_SYNCED, False, reasons.EDIT_NOT_ALLOWED,
                 f"Meta refused the edit: {error.details or error}. Meta allows edits of APPROVED, REJECTED and "
                 "PAUSED templates only, at most 1 per 24 h and 10 per 30 days for approved ones, and never a "
                 "change of an approved template's category")  # fmt: skip
        return True
    book.fields["lastEditedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kopf.info(body, reason="TemplateEdited", message=f"edited template {template_id}; review pending")
    return False


def _mirror(book: StatusBook, info: TemplateInfo) -> None:
    book.fields["templateId"] = info.id
    book.fields["templateStatus"] = info.status
    book.fields["category"] = info.category
    book.fields["rejectedReason"] = info.rejected_reason if info.status == "REJECTED" else None
    score = (info.quality_score or {}).get("score")
    if score:
        book.fields["qualityScore"] = score


def _summarise(book: StatusBook) -> None:
    meta_status = book.fields.get("templateStatus")
    if not book.is_true(reasons.TEMPLATE_SYNCED) or meta_status is None:
        book.summarise([reasons.TENANT_READY, reasons.TEMPLATE_SYNCED], "")
        return
    reason = STATUS_REASONS.get(str(meta_status), str(meta_status).title().replace("_", ""))
    if meta_status == "APPROVED":
        book.summarise([reasons.TEMPLATE_SYNCED], "approved by Meta: ready to send", reasons.APPROVED)
        return
    message = {
        "PENDING": "Meta is reviewing the template",
        "REJECTED": f"Meta rejected the template: {book.fields.get('rejectedReason') or 'no reason given'}",
        "PAUSED": "Meta paused the template because of low quality",
        "DISABLED": "Meta disabled the template",
    }.get(str(meta_status), f"Meta reports status {meta_status}")
    book._set_ready(False, reason, message)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete_template(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Delete only this language variant at Meta (name + hsm_id)."""
    shared = clients(memo)
    template_id = (body.get("status") or {}).get("templateId")
    if not template_id:
        return
    namespace = body["metadata"]["namespace"]
    tenant = await shared.kube.custom_object("tenants", namespace, body["spec"]["tenantRef"]["name"])
    token = await shared.kube.secret_key(
        namespace, token_secret_name(body["spec"]["tenantRef"]["name"]), "token"
    )
    if tenant is None or not token:
        logger.warning("template %s stays at Meta: its tenant or token is gone", template_id)
        return
    try:
        await shared.graph.delete_template(
            tenant["spec"]["wabaId"], token, body["spec"]["name"], hsm_id=template_id
        )
    except errors.InvalidParameter as error:
        if "not found" not in str(error).lower():
            raise kopf.PermanentError(f"Meta refused to delete the template: {error}") from None
    except (errors.TransientError, errors.RateLimited) as error:
        raise kopf.TemporaryError(
            f"Meta is unavailable: {error}", delay=shared.settings.retry_delay_seconds
        ) from None
