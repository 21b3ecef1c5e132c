"""What every handler shares: the clients, the settings, and status bookkeeping with Events."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from wabaplane.api.common import GROUP
from wabaplane.meta import errors
from wabaplane.meta.client import GraphClient
from wabaplane.operator import conditions, reasons
from wabaplane.operator.kube import Kube
from wabaplane.operator.metrics import RECONCILES
from wabaplane.operator.settings import OperatorSettings


@dataclass
class Clients:
    settings: OperatorSettings
    graph: GraphClient
    kube: Kube


Claim = tuple[str, int, str, str, str]


def claim_of(body: kopf.Body) -> Claim:
    """How an object's claim (of a phone number, of a WABA) sorts: the oldest first.

    creationTimestamp has one-second resolution, so among claims made in the same second the one
    that already holds the thing (its Conflict condition is False) comes first; the uid breaks ties.
    The namespace and name are for the operator's log only.
    """
    metadata = body["metadata"]
    conditions_ = (body.get("status") or {}).get("conditions") or []
    holds = any(c.get("type") == reasons.CONFLICT and c.get("status") == "False" for c in conditions_)
    return (metadata.get("creationTimestamp", ""), 0 if holds else 1, metadata["uid"], metadata["namespace"],
            metadata["name"])  # fmt: skip


def check_claim(book: StatusBook, claims: kopf.Index[str, Any], what: str, claimed: str, reason: str) -> bool:
    """Set Conflict from the claims index: False when this object holds `claimed`, else True.

    `what` names the thing in messages ("WABA", "phone number"). The operator's log names the holder
    for the platform team; status and Events never do (it may live in another namespace).
    """
    body, kind = book.body, book.body["kind"]
    holders = sorted(claims.get(claimed, []))
    if holders and holders[0][2] != body["metadata"]["uid"]:
        logging.getLogger("wabaplane.operator").warning(
            "%s %s/%s: %s %s is held by %s %s/%s", kind, body["metadata"]["namespace"], body["metadata"]["name"],
            what, claimed, kind, holders[0][3], holders[0][4],
        )  # fmt: skip
        book.set(reasons.CONFLICT, True, reason,
                 f"{what} {claimed} is already claimed by another {kind}; the older claim keeps it")  # fmt: skip
        return False
    return True


# Outside kopf's own `wabaplane.io/` prefix on purpose: kopf leaves annotations under its prefix out of
# the diff, and this one must count as a change so that the claimant's update handler runs at once.
CLAIM_RELEASED_ANNOTATION = f"claims.{GROUP}/released-by"


async def hand_over_claim(event_type: str | None, released: kopf.Body, claimed: str,
                          claims: kopf.Index[str, Any], kube: Kube) -> None:  # fmt: skip
    """When the holder of a claim is deleted, wake the next claimant so it takes over now, not at resync.

    kopf calls no handler of an object when an index entry of another object changes; annotating the
    next claimant with the released holder's uid is a change its update handler sees. Nothing to do
    for other events, or when the deleted object did not hold the claim.
    """
    conflict = conditions.get((released.get("status") or {}).get("conditions") or [], reasons.CONFLICT)
    if event_type != "DELETED" or conflict is None or conflict.get("status") != "False":
        return
    plural, uid = f"{released['kind'].lower()}s", released["metadata"]["uid"]
    for _, _, claimant_uid, namespace, name in sorted(claims.get(claimed, [])):
        if claimant_uid != uid and await kube.annotate(
            plural, namespace, name, {CLAIM_RELEASED_ANNOTATION: uid}
        ):
            # The operator's log only: an Event would name the claimant in the released one's namespace.
            logging.getLogger("wabaplane.operator").info(
                "%s %s released: %s %s/%s claims it next", released["kind"], claimed, released["kind"], namespace,
                name,
            )  # fmt: skip
            return


def as_body(obj: Mapping[str, Any]) -> kopf.Body:
    """A kopf Body around an object read from the API (for Events and status bookkeeping)."""
    return kopf.Body(cast(Any, obj))


def clients(memo: Any) -> Clients:
    found = memo.get("clients")
    if not isinstance(found, Clients):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return found


def post_event(warning: bool, body: kopf.Body, reason: str, message: str) -> None:
    """A kopf Event; outside kopf's own tasks (the management endpoint) kopf cannot post, so log it."""
    try:
        (kopf.warn if warning else kopf.info)(body, reason=reason, message=message)
    except LookupError:
        logging.getLogger("wabaplane.operator").info(
            "%s/%s: %s: %s", body["metadata"].get("namespace"), body["metadata"].get("name"), reason, message
        )


@dataclass
class StatusBook:
    """Accumulates one reconcile's status and posts an Event for every condition that flips."""

    body: kopf.Body
    generation: int
    current: list[dict[str, Any]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, body: kopf.Body) -> StatusBook:
        status = body.get("status") or {}
        return cls(body, int(body["metadata"].get("generation", 1)), list(status.get("conditions") or []))

    def set(self, type_: str, status: bool | None, reason: str, message: str) -> None:
        before = conditions.get(self.current, type_)
        self.current = conditions.set_condition(self.current, type_, status, reason, message, self.generation)
        after = conditions.get(self.current, type_)
        assert after is not None
        flipped = before is None or before.get("status") != after["status"] or before.get("reason") != reason
        if flipped and type_ != reasons.READY:
            unhealthy = (type_ in reasons.ABNORMAL_TRUE) == bool(status)
            (kopf.warn if unhealthy and status is not None else kopf.info)(
                self.body, reason=reason, message=message
            )

    def remove(self, type_: str) -> None:
        self.current = conditions.remove_condition(self.current, type_)

    def is_true(self, type_: str) -> bool:
        return conditions.is_true(self.current, type_)

    def summarise(
        self, required: list[str], ready_message: str, ready_reason: str = reasons.RECONCILED
    ) -> bool:
        """Set Ready from the required conditions: the first one not healthy explains why.

        Healthy is True, or False for the abnormal-true conditions (Conflict).
        """
        for type_ in required:
            condition = conditions.get(self.current, type_)
            healthy = "False" if type_ in reasons.ABNORMAL_TRUE else "True"
            if condition is None or condition["status"] != healthy:
                reason = condition["reason"] if condition else reasons.RECONCILING
                message = condition["message"] if condition else f"{type_} not yet determined"
                self._set_ready(False if condition else None, reason, message)
                return False
        self._set_ready(True, ready_reason, ready_message)
        return True

    def _set_ready(self, status: bool | None, reason: str, message: str) -> None:
        before = conditions.get(self.current, reasons.READY)
        self.current = conditions.set_condition(
            self.current, reasons.READY, status, reason, message, self.generation
        )
        value = "Unknown" if status is None else "True" if status else "False"
        flipped = before is None or before.get("status") != value
        if flipped and status is not None:
            post_event(not status, self.body, reason, message)

    def write(self, patch: kopf.Patch) -> None:
        for key, value in self.fields.items():
            patch.status[key] = value
        patch.status["conditions"] = self.current
        patch.status["observedGeneration"] = self.generation
        ready = conditions.get(self.current, reasons.READY)
        RECONCILES.labels(kind=self.body.get("kind", ""), ready=ready["status"] if ready else "Unknown").inc()


@contextmanager
def meta_errors(book: StatusBook, condition: str, settings: OperatorSettings) -> Iterator[None]:
    """Turn Graph errors into an honest condition and a delayed retry (never a hot loop)."""
    try:
        yield
    except errors.RateLimited as error:
        delay = max(error.retry_after or 0.0, settings.retry_delay_seconds)
        book.set(
            condition,
            False,
            reasons.META_RATE_LIMITED,
            f"Meta rate limited the call; retrying in {delay:.0f}s: {error}",
        )
        raise kopf.TemporaryError(str(error), delay=delay) from None
    except errors.TransientError as error:
        book.set(condition, False, reasons.META_UNAVAILABLE, f"Meta is unavailable; retrying: {error}")
        raise kopf.TemporaryError(str(error), delay=settings.retry_delay_seconds) from None
    except errors.AuthenticationError as error:
        book.set(condition, False, reasons.TOKEN_INVALID, f"Meta refused the token: {error}")
        raise kopf.TemporaryError(str(error), delay=settings.resync_seconds) from None
    except errors.MetaError as error:
        book.set(condition, False, reasons.META_ERROR, f"Meta answered an error: {error}")
        raise kopf.TemporaryError(str(error), delay=settings.resync_seconds) from None
