"""The gateway's durable store: ingested units with their dedupe keys, and the delivery outbox.

One interface over SQLite (one replica; WAL, one connection, so writes never contend) and
PostgreSQL (several replicas; outbox claims use FOR UPDATE SKIP LOCKED and a lease, so two replicas
never hold the same delivery and a crashed replica's claims come back when the lease ends).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, delete, event, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wabaplane.store import migrations
from wabaplane.store.tables import deliveries, disabled_endpoints, units

Clock = Callable[[], float]
Target = Literal["tenant", "operator"]
State = Literal["pending", "delivered", "dead"]
STATES: tuple[State, ...] = ("pending", "delivered", "dead")


class StoreUnavailable(Exception):
    """The database cannot be reached or refused the write; nothing was stored."""


class StoreConfigError(ValueError):
    """The store URL names no supported backend."""


@dataclass(frozen=True)
class NewUnit:
    """A unit ready to be stored: routed to a tenant (with its delivery targets) or unroutable."""

    dedupe_key: str
    field: str
    entry_id: str
    entry_time: int | None
    value: str
    namespace: str | None = None
    tenant: str | None = None
    unroutable_reason: str | None = None
    targets: tuple[Target, ...] = ()


@dataclass(frozen=True)
class IngestResult:
    stored: int
    duplicates: int
    deliveries: int
    new_keys: frozenset[str]


@dataclass(frozen=True)
class Delivery:
    seq: int
    id: str
    target: Target
    namespace: str
    tenant: str
    state: State
    attempts: int
    created_at: float
    next_attempt_at: float
    delivered_at: float | None
    last_status: int | None
    last_error: str | None
    field: str
    entry_id: str
    entry_time: int | None
    value: str
    received_at: float


@dataclass(frozen=True)
class Unroutable:
    id: int
    received_at: float
    field: str
    entry_id: str
    reason: str
    value: str


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    oldest_pending_age: float
    dead_by_tenant: dict[tuple[str, str], int]
    unroutable: int


def async_url(url: str) -> str:
    """`sqlite:///file.db` and `postgresql://...` in, the URL of the asyncio driver out."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise StoreConfigError(
        f"unsupported store URL scheme {parsed.drivername!r}: use sqlite:///path/to/file.db or "
        "postgresql://user:password@host/database"
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; FULL makes each commit survive power loss, not only
    # a crash of the process, because Meta gets its 200 right after the commit.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    def __init__(self, engine: AsyncEngine, clock: Clock = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self.backend = engine.dialect.name

    @classmethod
    async def open(cls, url: str, clock: Clock = time.time) -> Store:
        driver_url = async_url(url)
        if driver_url.startswith("sqlite"):
            # One connection: SQLite has one writer anyway, and queueing in the pool is cheaper
            # than "database is locked" retries.
            engine = create_async_engine(driver_url, pool_size=1, max_overflow=0, pool_timeout=30)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(driver_url, pool_size=10, max_overflow=10, pool_pre_ping=True)
        store = cls(engine, clock)
        try:
            await migrations.migrate(engine)
        except Exception as error:
            await engine.dispose()
            raise StoreUnavailable(f"cannot open the store: {type(error).__name__}: {error}") from error
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(select(1))

    # -- ingest --------------------------------------------------------------------------------

    def _insert_unit(self) -> Any:
        dialect = postgresql if self.backend == "postgresql" else sqlite
        return (
            dialect.insert(units).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(units.c.id)
        )

    async def ingest(self, batch: Sequence[NewUnit]) -> IngestResult:
        """Store every new unit and its deliveries in one transaction; known keys are duplicates."""
        now = self.clock()
        stored = duplicates = queued = 0
        new_keys: set[str] = set()
        async with self.engine.begin() as connection:
            for unit in batch:
                unit_id = (
                    await connection.execute(
                        self._insert_unit().values(
                            dedupe_key=unit.dedupe_key,
                            received_at=now,
                            field=unit.field,
                            entry_id=unit.entry_id,
                            entry_time=unit.entry_time,
                            value=unit.value,
                            namespace=unit.namespace,
                            tenant=unit.tenant,
                            unroutable_reason=unit.unroutable_reason,
                        )
                    )
                ).scalar()
                if unit_id is None:
                    duplicates += 1
                    continue
                stored += 1
                new_keys.add(unit.dedupe_key)
                if unit.targets:
                    assert unit.namespace is not None
                    assert unit.tenant is not None
                    await connection.execute(
                        deliveries.insert(),
                        [
                            {
                                "id": "msg_" + uuid.uuid4().hex,
                                "unit_id": unit_id,
                                "target": target,
                                "namespace": unit.namespace,
                                "tenant": unit.tenant,
                                "state": "pending",
                                "attempts": 0,
                                "created_at": now,
                                "next_attempt_at": now,
                            }
                            for target in unit.targets
                        ],
                    )
                    queued += len(unit.targets)
        return IngestResult(stored, duplicates, queued, frozenset(new_keys))

    # -- the outbox ----------------------------------------------------------------------------

    def _due(self, now: float) -> Any:
        return and_(
            deliveries.c.state == "pending",
            deliveries.c.next_attempt_at <= now,
            or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
        )

    async def due_groups(self) -> dict[tuple[Target, str, str], int]:
        """How many deliveries are due per (target, namespace, tenant)."""
        now = self.clock()
        query = (
            select(deliveries.c.target, deliveries.c.namespace, deliveries.c.tenant, func.count())
            .where(self._due(now))
            .group_by(deliveries.c.target, deliveries.c.namespace, deliveries.c.tenant)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return {(row[0], row[1], row[2]): int(row[3]) for row in rows}

    async def next_due_at(self) -> float | None:
        query = select(func.min(func.coalesce(deliveries.c.lease_until, deliveries.c.next_attempt_at))).where(
            deliveries.c.state == "pending"
        )
        async with self.engine.connect() as connection:
            value = (await connection.execute(query)).scalar()
        return float(value) if value is not None else None

    async def claim(
        self, target: Target, namespace: str, tenant: str, limit: int, lease_seconds: float
    ) -> list[Delivery]:
        """Lease up to `limit` due deliveries of one tenant and target, oldest first."""
        if limit <= 0:
            return []
        now = self.clock()
        chosen = (
            select(deliveries.c.seq)
            .where(
                self._due(now),
                deliveries.c.target == target,
                deliveries.c.namespace == namespace,
                deliveries.c.tenant == tenant,
            )
            .order_by(deliveries.c.next_attempt_at, deliveries.c.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # One statement: atomic on SQLite even across processes; on PostgreSQL the subquery's
        # row locks (skipping rows another replica holds) keep two claims apart.
        claim = (
            update(deliveries)
            .where(deliveries.c.seq.in_(chosen.scalar_subquery()))
            .values(lease_until=now + lease_seconds)
            .returning(deliveries.c.seq)
        )
        async with self.engine.begin() as connection:
            seqs = list((await connection.execute(claim)).scalars())
            if not seqs:
                return []
            return await self._deliveries(connection, deliveries.c.seq.in_(seqs))

    async def _deliveries(
        self, connection: AsyncConnection, *where: Any, limit: int | None = None
    ) -> list[Delivery]:
        query = (
            select(
                deliveries,
                units.c.field,
                units.c.entry_id,
                units.c.entry_time,
                units.c.value,
                units.c.received_at,
            )
            .join(units, units.c.id == deliveries.c.unit_id)
            .where(*where)
            .order_by(deliveries.c.seq)
        )
        if limit is not None:
            query = query.limit(limit)
        rows = (await connection.execute(query)).mappings().all()
        return [
            Delivery(
                seq=row["seq"],
                id=row["id"],
                target=row["target"],
                namespace=row["namespace"],
                tenant=row["tenant"],
                state=row["state"],
                attempts=row["attempts"],
                created_at=row["created_at"],
                next_attempt_at=row["next_attempt_at"],
                delivered_at=row["delivered_at"],
                last_status=row["last_status"],
                last_error=row["last_error"],
                field=row["field"],
                entry_id=row["entry_id"],
                entry_time=row["entry_time"],
                value=row["value"],
                received_at=row["received_at"],
            )
            for row in rows
        ]

    async def mark_delivered(self, seq: int, status: int) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                update(deliveries)
                .where(deliveries.c.seq == seq)
                .values(
                    state="delivered",
                    delivered_at=self.clock(),
                    attempts=deliveries.c.attempts + 1,
                    last_status=status,
                    last_error=None,
                    lease_until=None,
                )
            )

    async def mark_failed(self, seq: int, status: int | None, error: str, retry_at: float | None) -> None:
        """Count a failed attempt: retry at `retry_at`, or dead-letter it when that is None."""
        values: dict[str, Any] = {
            "attempts": deliveries.c.attempts + 1,
            "last_status": status,
            "last_error": error[:2000],
            "lease_until": None,
        }
        if retry_at is None:
            values["state"] = "dead"
        else:
            values["next_attempt_at"] = retry_at
        async with self.engine.begin() as connection:
            await connection.execute(update(deliveries).where(deliveries.c.seq == seq).values(**values))

    async def release(self, seq: int, at: float) -> None:
        """Give a claimed delivery back without counting an attempt (held, circuit open, shutdown)."""
        async with self.engine.begin() as connection:
            await connection.execute(
                update(deliveries).where(deliveries.c.seq == seq).values(lease_until=None, next_attempt_at=at)
            )

    # -- tenant-scoped views -------------------------------------------------------------------

    async def list_deliveries(
        self,
        namespace: str,
        tenant: str,
        *,
        state: State | None = None,
        target: Target = "tenant",
        since: float | None = None,
        until: float | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        where = [
            deliveries.c.namespace == namespace,
            deliveries.c.tenant == tenant,
            deliveries.c.target == target,
        ]
        if state is not None:
            where.append(deliveries.c.state == state)
        if since is not None:
            where.append(deliveries.c.created_at >= since)
        if until is not None:
            where.append(deliveries.c.created_at < until)
        if after is not None:
            where.append(deliveries.c.seq > after)
        async with self.engine.connect() as connection:
            return await self._deliveries(connection, *where, limit=limit)

    async def get_delivery(self, namespace: str, tenant: str, delivery_id: str) -> Delivery | None:
        async with self.engine.connect() as connection:
            found = await self._deliveries(
                connection,
                deliveries.c.namespace == namespace,
                deliveries.c.tenant == tenant,
                deliveries.c.target == "tenant",
                deliveries.c.id == delivery_id,
            )
        return found[0] if found else None

    async def replay(
        self,
        namespace: str,
        tenant: str,
        *,
        ids: Iterable[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        states: Iterable[State] = ("dead",),
    ) -> int:
        """Queue deliveries of one tenant again (same webhook-id), with a fresh retry schedule."""
        where = [
            deliveries.c.namespace == namespace,
            deliveries.c.tenant == tenant,
            deliveries.c.target == "tenant",
            deliveries.c.state.in_(list(states)),
        ]
        if ids is not None:
            where.append(deliveries.c.id.in_(list(ids)))
        if since is not None:
            where.append(deliveries.c.created_at >= since)
        if until is not None:
            where.append(deliveries.c.created_at < until)
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(deliveries)
                .where(*where)
                .values(state="pending", attempts=0, next_attempt_at=self.clock(), lease_until=None)
            )
        return int(result.rowcount)

    # -- endpoints disabled by 410 Gone ----------------------------------------------------------

    async def disable_endpoint(self, namespace: str, tenant: str, url: str, reason: str) -> None:
        dialect = postgresql if self.backend == "postgresql" else sqlite
        async with self.engine.begin() as connection:
            await connection.execute(
                dialect.insert(disabled_endpoints)
                .values(namespace=namespace, tenant=tenant, url=url, disabled_at=self.clock(), reason=reason)
                .on_conflict_do_nothing()
            )

    async def enable_endpoint(self, namespace: str, tenant: str) -> int:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                delete(disabled_endpoints).where(
                    disabled_endpoints.c.namespace == namespace, disabled_endpoints.c.tenant == tenant
                )
            )
        return int(result.rowcount)

    async def disabled_endpoints(self) -> dict[tuple[str, str, str], str]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(disabled_endpoints))).mappings().all()
        return {(row["namespace"], row["tenant"], row["url"]): row["reason"] for row in rows}

    # -- operations ------------------------------------------------------------------------------

    async def unroutable(self, limit: int = 100, after: int | None = None) -> list[Unroutable]:
        query = select(units).where(units.c.tenant.is_(None)).order_by(units.c.id).limit(limit)
        if after is not None:
            query = query.where(units.c.id > after)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [
            Unroutable(
                row["id"],
                row["received_at"],
                row["field"],
                row["entry_id"],
                row["unroutable_reason"] or "",
                row["value"],
            )
            for row in rows
        ]

    async def stats(self) -> OutboxStats:
        now = self.clock()
        async with self.engine.connect() as connection:
            pending, oldest = (
                await connection.execute(
                    select(func.count(), func.min(deliveries.c.created_at)).where(
                        deliveries.c.state == "pending"
                    )
                )
            ).one()
            dead_rows = (
                await connection.execute(
                    select(deliveries.c.namespace, deliveries.c.tenant, func.count())
                    .where(deliveries.c.state == "dead")
                    .group_by(deliveries.c.namespace, deliveries.c.tenant)
                )
            ).all()
            unroutable = (
                await connection.execute(select(func.count()).where(units.c.tenant.is_(None)))
            ).scalar_one()
        return OutboxStats(
            pending=int(pending),
            oldest_pending_age=max(0.0, now - float(oldest)) if oldest is not None else 0.0,
            dead_by_tenant={(row[0], row[1]): int(row[2]) for row in dead_rows},
            unroutable=int(unroutable),
        )

    async def purge(self, retention_seconds: float, dead_retention_seconds: float) -> int:
        """Forget units older than the retention whose deliveries are finished.

        Dedupe keys live as long as their unit, so the retention must exceed Meta's 7 days of
        retries. Dead letters are kept for their own, longer, retention.
        """
        now = self.clock()
        unfinished = exists().where(
            deliveries.c.unit_id == units.c.id,
            or_(
                deliveries.c.state == "pending",
                and_(deliveries.c.state == "dead", deliveries.c.created_at >= now - dead_retention_seconds),
            ),
        )
        async with self.engine.begin() as connection:
            old = select(units.c.id).where(units.c.received_at < now - retention_seconds, ~unfinished)
            ids = list((await connection.execute(old)).scalars())
            if not ids:
                return 0
            await connection.execute(delete(deliveries).where(deliveries.c.unit_id.in_(ids)))
            await connection.execute(delete(units).where(units.c.id.in_(ids)))
        return len(ids)
