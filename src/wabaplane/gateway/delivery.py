"""The delivery worker: drains the outbox to tenant endpoints and to the operator.

The store is the truth and this loop only a cache of it: a delivery is leased, attempted, then
marked delivered, rescheduled or dead-lettered; a crash leaves a lease that expires, and the
delivery is attempted again with the same `webhook-id`. Each tenant has its own concurrency limit
(`quotas.maxInFlightDeliveries`) and a circuit breaker per endpoint, so a slow or dead endpoint only
ever occupies its own tenant's slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from wabaplane.gateway.cluster import ClusterView
from wabaplane.gateway.conversations import CONVERSATION_HEADER, conversation_of
from wabaplane.gateway.metrics import GatewayMetrics
from wabaplane.gateway.routing import TenantInfo
from wabaplane.gateway.settings import GatewaySettings
from wabaplane.gateway.signing import hub_signature, standard_signature
from wabaplane.gateway.ssrf import DestinationRefused, EgressPolicy, GuardedResolver
from wabaplane.gateway.units import OBJECT
from wabaplane.store import Delivery, Store, Target

logger = logging.getLogger("wabaplane.gateway.delivery")
USER_AGENT = "wabaplane-gateway"
GroupKey = tuple[Target, str, str]


def envelope_bytes(delivery: Delivery) -> bytes:
    """Meta's envelope holding this one unit, serialised the way Meta does (ASCII, escaped)."""
    entry: dict[str, Any] = {"id": delivery.entry_id}
    if delivery.entry_time is not None:
        entry["time"] = delivery.entry_time
    entry["changes"] = [{"value": json.loads(delivery.value), "field": delivery.field}]
    return json.dumps({"object": OBJECT, "entry": [entry]}, ensure_ascii=True, separators=(",", ":")).encode()


def parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - now)


def tenant_label(namespace: str, tenant: str) -> str:
    return f"{namespace}/{tenant}"


@dataclass
class Breaker:
    """Closed until `threshold` consecutive failures; then open for a growing cooldown; then one probe."""

    threshold: int
    cooldown: float
    max_cooldown: float
    failures: int = 0
    open_until: float = 0.0
    next_cooldown: float = 0.0

    def capacity(self, limit: int, now: float) -> int:
        if self.failures < self.threshold:
            return limit
        return 0 if now < self.open_until else 1

    def is_open(self, now: float) -> bool:
        return self.failures >= self.threshold and now < self.open_until

    def success(self) -> None:
        self.failures = 0
        self.next_cooldown = 0.0

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.next_cooldown = min(self.max_cooldown, self.next_cooldown * 2 or self.cooldown)
            self.open_until = now + self.next_cooldown


@dataclass(frozen=True)
class Outcome:
    status: int | None
    error: str | None
    retry_after: float | None = None


class Deliverer:
    def __init__(
        self,
        store: Store,
        view: ClusterView,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        clock: Any = time.time,
    ) -> None:
        self.store, self.view, self.settings, self.metrics, self.clock = store, view, settings, metrics, clock
        self.policy = EgressPolicy.from_strings(settings.allowed_cidrs, settings.allow_http)
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.in_flight: Counter[GroupKey] = Counter()
        self.breakers: dict[tuple[str, str, str], Breaker] = {}
        self.disabled: dict[tuple[str, str, str], str] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.tenant_session: aiohttp.ClientSession | None = None
        self.operator_session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.delivery_timeout)
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy), limit=0, ttl_dns_cache=30)
        self.tenant_session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        self.operator_session = aiohttp.ClientSession(timeout=timeout)
        self.disabled = await self.store.disabled_endpoints()

    def stop(self) -> None:
        """Stop claiming; `run` returns after its current pass."""
        self.stopping.set()
        self.wake.set()

    async def close(self) -> None:
        # Attempts in flight finish (they are bounded by the delivery timeout): cancelling one in
        # the middle of a store write would only make it run again after its lease.
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.settings.delivery_timeout + 5)
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for session in (self.tenant_session, self.operator_session):
            if session is not None:
                await session.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                await self.dispatch_once()
            except (SQLAlchemyError, OSError) as error:
                logger.warning("outbox unavailable: %s", type(error).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.settings.poll_interval)

    # -- choosing what to send -----------------------------------------------------------------

    def hold_reason(self, tenant: TenantInfo | None) -> str | None:
        """Why a tenant's due deliveries wait (they are never dropped), or None."""
        if tenant is None:
            return "tenant-missing"
        if tenant.suspended:
            return "suspended"
        if not tenant.webhook_url:
            return "no-webhook-url"
        if (tenant.namespace, tenant.name, tenant.webhook_url) in self.disabled:
            return "endpoint-disabled"
        if not self.view.webhook_secrets(tenant.key):
            return "no-webhook-secret"
        return None

    def _limit(self, group: GroupKey, now: float) -> tuple[int, str | None]:
        target, namespace, name = group
        if target == "operator":
            if not self.settings.operator_url:
                return 0, "no-operator-url"
            return self.settings.operator_concurrency, None
        tenant = self.view.snapshot.tenants.get((namespace, name))
        reason = self.hold_reason(tenant)
        if reason is not None or tenant is None:
            return 0, reason
        breaker = self._breaker(tenant)
        return breaker.capacity(tenant.max_in_flight, now), None

    def _breaker(self, tenant: TenantInfo) -> Breaker:
        key = (tenant.namespace, tenant.name, tenant.webhook_url or "")
        if key not in self.breakers:
            self.breakers[key] = Breaker(
                self.settings.breaker_failures,
                self.settings.breaker_cooldown,
                self.settings.breaker_max_cooldown,
            )
        return self.breakers[key]

    async def dispatch_once(self) -> int:
        now = self.clock()
        started = 0
        held: Counter[tuple[str, str]] = Counter()
        for group, due in (await self.store.due_groups()).items():
            limit, reason = self._limit(group, now)
            if reason is not None:
                held[(tenant_label(group[1], group[2]), reason)] += due
                continue
            capacity = min(due, limit - self.in_flight[group])
            if capacity <= 0:
                continue
            for delivery in await self.store.claim(*group, capacity, self.settings.lease_seconds):
                self.in_flight[group] += 1
                started += 1
                self._spawn(self._attempt(group, delivery))
        self.metrics.held.clear()
        for (label, reason), count in held.items():
            self.metrics.held.labels(tenant=label, reason=reason).set(count)
        return started

    # -- one attempt ---------------------------------------------------------------------------

    def _request(self, delivery: Delivery, body: bytes) -> tuple[str, dict[str, str]] | None:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "X-Wabaplane-Attempt": str(delivery.attempts + 1)}  # fmt: skip
        if delivery.target == "operator":
            assert self.settings.operator_url is not None
            token = self.settings.management_token
            if token is not None:
                headers["Authorization"] = "Bearer " + token.get_secret_value()
            return self.settings.operator_url.rstrip("/") + "/v1/management-events", headers
        tenant = self.view.snapshot.tenants.get((delivery.namespace, delivery.tenant))
        # hold_reason covers a missing tenant, URL or secret: the deliverer holds the delivery then.
        if tenant is None or tenant.webhook_url is None or self.hold_reason(tenant) is not None:
            return None
        secrets = self.view.webhook_secrets(tenant.key)
        timestamp = int(self.clock())
        headers["X-Hub-Signature-256"] = hub_signature(body, secrets[0])
        headers["webhook-id"] = delivery.id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = standard_signature(delivery.id, timestamp, body, secrets)
        conversation = conversation_of(delivery.namespace, delivery.tenant, json.loads(delivery.value))
        if conversation is not None:
            headers[CONVERSATION_HEADER] = conversation
        return tenant.webhook_url, headers

    async def _post(self, target: Target, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        session = self.operator_session if target == "operator" else self.tenant_session
        assert session is not None
        try:
            if target == "tenant":
                self.policy.check_url(url)
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                await response.content.read(64 * 1024)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
                error = (
                    None if 200 <= response.status < 300 else f"the endpoint answered HTTP {response.status}"
                )
                return Outcome(response.status, error, retry_after)
        except DestinationRefused as refused:
            return Outcome(None, f"destination refused: {refused}")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return Outcome(None, f"{type(error).__name__}: {error}"[:500])

    async def _attempt(self, group: GroupKey, delivery: Delivery) -> None:
        label = tenant_label(delivery.namespace, delivery.tenant)
        try:
            body = envelope_bytes(delivery)
            request = self._request(delivery, body)
            if request is None:
                await self.store.release(delivery.seq, self.clock())
                return
            url, headers = request
            started = time.monotonic()
            outcome = await self._post(delivery.target, url, body, headers)
            self.metrics.delivery_seconds.labels(tenant=label, target=delivery.target).observe(
                time.monotonic() - started
            )
            await self._record(delivery, url, outcome)
        except asyncio.CancelledError:
            with contextlib.suppress(SQLAlchemyError, OSError):
                await asyncio.shield(self.store.release(delivery.seq, self.clock()))
            raise
        except (SQLAlchemyError, OSError) as error:
            # The lease runs out and the delivery is attempted again: at least once, never lost.
            logger.warning("delivery %s: store unavailable: %s", delivery.id, type(error).__name__)
        finally:
            self.in_flight[group] -= 1
            self.wake.set()

    async def _record(self, delivery: Delivery, url: str, outcome: Outcome) -> None:
        label = tenant_label(delivery.namespace, delivery.tenant)
        now = self.clock()
        tenant = self.view.snapshot.tenants.get((delivery.namespace, delivery.tenant))
        breaker = self._breaker(tenant) if delivery.target == "tenant" and tenant is not None else None
        if outcome.status is not None and 200 <= outcome.status < 300:
            await self.store.mark_delivered(delivery.seq, outcome.status)
            self.metrics.attempts.labels(tenant=label, target=delivery.target, outcome="success").inc()
            if breaker is not None:
                breaker.success()
                self.metrics.breaker_open.labels(tenant=label).set(0)
            return
        if outcome.status == 410 and delivery.target == "tenant":
            reason = "the endpoint answered 410 Gone"
            await self.store.disable_endpoint(delivery.namespace, delivery.tenant, url, reason)
            self.disabled[(delivery.namespace, delivery.tenant, url)] = reason
            await self.store.mark_failed(delivery.seq, 410, reason + "; deliveries are held until it is re-enabled",
                                         now)  # fmt: skip
            self.metrics.attempts.labels(tenant=label, target=delivery.target, outcome="gone").inc()
            logger.warning("tenant %s endpoint answered 410 Gone: deliveries held", label)
            return
        if breaker is not None:
            breaker.failure(now)
            self.metrics.breaker_open.labels(tenant=label).set(1 if breaker.is_open(now) else 0)
        retry_at = self.next_attempt_at(delivery.attempts + 1, outcome.retry_after, now)
        await self.store.mark_failed(delivery.seq, outcome.status, outcome.error or "failed", retry_at)
        self.metrics.attempts.labels(tenant=label, target=delivery.target, outcome="failure").inc()
        if retry_at is None:
            self.metrics.dead_lettered.labels(tenant=label, target=delivery.target).inc()
            logger.warning("delivery %s to %s dead-lettered after %d attempts", delivery.id, label,
                           delivery.attempts + 1)  # fmt: skip

    def next_attempt_at(self, attempts_made: int, retry_after: float | None, now: float) -> float | None:
        """When to try again after `attempts_made` failures, or None when the schedule is spent."""
        schedule = self.settings.retry_schedule
        if attempts_made > len(schedule):
            return None
        jitter = self.settings.retry_jitter
        delay = schedule[attempts_made - 1] * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311 - spreads retries only
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.max_retry_after))
        return now + delay
