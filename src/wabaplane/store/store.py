"""The gateway's durable store: ingested units with their dedupe keys, and the delivery outbox.

One interface over SQLite (one replica; WAL, one connection, so writes never contend) and
PostgreSQL (several replicas; outbox claims use FOR UPDATE SKIP LOCKED and a lease, so two replicas
never hold the same delivery and a crashed replica's claims come back when the lease ends).
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    create_engine,
    delete,
    event,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from wabaplane.store import messagelog, migrations
from wabaplane.store.group_commit import GroupCommit
from wabaplane.store.messagelog import (
    Conversation,
    Message,
    MessageRecord,
    Remembered,
    StatusRecord,
    Usage,
)
from wabaplane.store.tables import deliveries, disabled_endpoints, units

Clock = Callable[[], float]
Target = Literal["tenant", "operator"]
State = Literal["pending", "delivered", "dead"]
STATES: tuple[State, ...] = ("pending", "delivered", "dead")
# Requests per group commit.
GROUP_COMMIT_REQUESTS = 256
T = TypeVar("T")
SQLITE_APPLY_STATUS = (
    "UPDATE messages SET status = ?, status_rank = ?, updated_at = ?, error_code = ?, error_title = ? "
    "WHERE id = ? AND namespace = ? AND tenant = ? AND status_rank < ?"
)
SQLITE_UPSERT_CONVERSATION = (
    "INSERT INTO conversations (id, namespace, tenant, phone_number_id, customer, created_at, last_inbound_at, "
    "last_message_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "last_message_at = max(last_message_at, excluded.last_message_at), "
    "last_inbound_at = CASE WHEN excluded.last_inbound_at IS NULL THEN last_inbound_at "
    "ELSE max(coalesce(last_inbound_at, 0), excluded.last_inbound_at) END"
)
SQLITE_INSERT_MESSAGE = (
    "INSERT INTO messages (id, conversation_id, namespace, tenant, phone_number_id, customer, direction, type, "
    "category, business_initiated, template, context_id, status, status_rank, created_at, updated_at, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
SQLITE_SEND_CONTEXT = (
    "SELECT (SELECT last_inbound_at FROM conversations WHERE id = ?1), "
    "(SELECT count FROM monthly_sends WHERE namespace = ?2 AND tenant = ?3 AND month = ?4), "
    "EXISTS (SELECT 1 FROM messages WHERE phone_number_id = ?5 AND business_initiated = 1 AND created_at >= ?6 "
    "AND customer = ?7), "
    "CASE WHEN ?8 AND NOT EXISTS (SELECT 1 FROM messages WHERE phone_number_id = ?5 AND business_initiated = 1 "
    "AND created_at >= ?6 AND customer = ?7) THEN (SELECT count(DISTINCT customer) FROM messages "
    "WHERE phone_number_id = ?5 AND business_initiated = 1 AND created_at >= ?6) END"
)
SQLITE_INSERT_UNIT = (
    "INSERT INTO units (dedupe_key, received_at, field, entry_id, entry_time, value, namespace, tenant, "
    "unroutable_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
)


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
    # What the unit means for the message log, applied in the same transaction when it is new.
    logs: tuple[MessageRecord | StatusRecord, ...] = ()


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


def driver_url(url: str) -> str:
    """`sqlite:///file.db` or `postgresql://...` in; the URL of the driver the store uses out."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+pysqlite"))
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
    """Every operation is a synchronous SQLAlchemy Core function of one transaction.

    PostgreSQL runs it on the asyncio engine (asyncpg) through `run_sync`. SQLite runs it whole in
    one dedicated thread on one connection: one thread hop per transaction instead of one per
    statement, and never two writers in this process.
    """

    def __init__(self, backend: str, clock: Clock, *, engine: AsyncEngine | None = None,
                 sync_engine: Engine | None = None) -> None:  # fmt: skip
        self.backend = backend
        self.clock = clock
        self.engine = engine
        self.sync_engine = sync_engine
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite") if sync_engine else None
        self._ingests: GroupCommit[list[NewUnit], IngestResult] = GroupCommit(
            self.run, self._ingest_group,
            GROUP_COMMIT_REQUESTS, lambda: StoreUnavailable("cancelled"),
        )  # fmt: skip
        self._message_logs: GroupCommit[MessageRecord, bool] = GroupCommit(
            self.run, self._log_group,
            GROUP_COMMIT_REQUESTS, lambda: StoreUnavailable("cancelled"),
        )  # fmt: skip
        dialect = postgresql if backend == "postgresql" else sqlite
        self._insert_unit = (
            dialect.insert(units).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(units.c.id)
        )
        self._insert_disabled = dialect.insert(disabled_endpoints).on_conflict_do_nothing()

    @classmethod
    async def open(cls, url: str, clock: Clock = time.time) -> Store:
        target = driver_url(url)
        if target.startswith("sqlite"):
            sync_engine = create_engine(
                target, pool_size=1, max_overflow=0, connect_args={"check_same_thread": False}
            )
            event.listen(sync_engine, "connect", _sqlite_pragmas)
            store = cls("sqlite", clock, sync_engine=sync_engine)
        else:
            engine = create_async_engine(target, pool_size=10, max_overflow=10, pool_pre_ping=True)
            store = cls("postgresql", clock, engine=engine)
        try:
            await store.run(migrations.migrate)
        except Exception as error:
            await store.close()
            raise StoreUnavailable(f"cannot open the store: {type(error).__name__}: {error}") from error
        return store

    async def close(self) -> None:
        await self._ingests.drain()
        await self._message_logs.drain()
        if self.engine is not None:
            await self.engine.dispose()
        if self.sync_engine is not None and self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self.sync_engine.dispose)
            self._thread.shutdown(wait=True)

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction on this backend."""
        if self._thread is not None:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._run_here, work)
        assert self.engine is not None
        async with self.engine.begin() as connection:
            return await connection.run_sync(work)

    def _run_here(self, work: Callable[[Connection], T]) -> T:
        assert self.sync_engine is not None
        with self.sync_engine.begin() as connection:
            return work(connection)

    async def ping(self) -> None:
        await self.run(lambda connection: connection.execute(select(1)).scalar())

    # -- ingest --------------------------------------------------------------------------------

    async def ingest(self, batch: Sequence[NewUnit]) -> IngestResult:
        """Store every new unit of one request and its deliveries; known keys are duplicates.

        Requests that arrive while a commit is under way are committed together in the next one
        (group commit): one fsync serves them all, and each caller still returns only after the
        transaction holding its units is durable. A failed commit fails every request in it.
        """
        return await self._ingests.submit(list(batch))

    def _log_group(self, connection: Connection, *, requests: list[MessageRecord]) -> list[bool]:
        now = self.clock()
        if self.backend != "sqlite":
            return [messagelog.log_message(connection, record, now) for record in requests]
        log = self._sqlite_logger(connection)
        inserted = [bool(log(record, now)) for record in requests]
        # The Core path counts in log_message; the SQLite fast path counts here, once per group.
        messagelog.count_sends(connection, [r for r, new in zip(requests, inserted, strict=True) if new], now)
        return inserted

    def _ingest_group(self, connection: Connection, *, requests: list[list[NewUnit]]) -> list[IngestResult]:
        now = self.clock()
        results = []
        seen: set[str] = set()
        outbox = []
        new_messages: list[MessageRecord] = []
        sqlite_fast_path = self.backend == "sqlite"
        insert = self._sqlite_inserter(connection) if sqlite_fast_path else self._core_inserter(connection)
        log = self._sqlite_logger(connection) if sqlite_fast_path else self._core_logger(connection)
        for request in requests:
            stored = duplicates = queued = 0
            new_keys = set()
            for unit in request:
                unit_id = None
                if unit.dedupe_key not in seen:
                    seen.add(unit.dedupe_key)
                    unit_id = insert(unit, now)
                if unit_id is None:
                    duplicates += 1
                    continue
                stored += 1
                new_keys.add(unit.dedupe_key)
                for entry in unit.logs:
                    changed = log(entry, now)
                    if sqlite_fast_path and changed and isinstance(entry, MessageRecord):
                        new_messages.append(entry)
                queued += len(unit.targets)
                outbox += [
                    {"id": "msg_" + uuid.uuid4().hex, "unit_id": unit_id, "target": target,
                     "namespace": unit.namespace, "tenant": unit.tenant, "state": "pending", "attempts": 0,
                     "created_at": now, "next_attempt_at": now}
                    for target in unit.targets
                ]  # fmt: skip
            results.append(IngestResult(stored, duplicates, queued, frozenset(new_keys)))
        if outbox:
            connection.execute(deliveries.insert(), outbox)
        # The Core path counts in log_message; the SQLite fast path counts here, once per group.
        messagelog.count_sends(connection, new_messages, now)
        return results

    def _core_inserter(self, connection: Connection) -> Callable[[NewUnit, float], int | None]:
        def insert(unit: NewUnit, now: float) -> int | None:
            row = {"dedupe_key": unit.dedupe_key, "received_at": now, "field": unit.field, "entry_id": unit.entry_id,
                   "entry_time": unit.entry_time, "value": unit.value, "namespace": unit.namespace,
                   "tenant": unit.tenant, "unroutable_reason": unit.unroutable_reason}  # fmt: skip
            value = connection.execute(self._insert_unit, row).scalar()
            return int(value) if value is not None else None

        return insert

    @staticmethod
    def _sqlite_inserter(connection: Connection) -> Callable[[NewUnit, float], int | None]:
        # The hottest statement of the gateway, on the transaction's own connection: the driver's
        # cursor directly saves most of the per-statement cost, which bounds webhooks/s.
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]

        def insert(unit: NewUnit, now: float) -> int | None:
            row = cursor.execute(SQLITE_INSERT_UNIT, (unit.dedupe_key, now, unit.field, unit.entry_id, unit.entry_time,
                                                      unit.value, unit.namespace, unit.tenant,
                                                      unit.unroutable_reason)).fetchone()  # fmt: skip
            return int(row[0]) if row is not None else None

        return insert

    @staticmethod
    def _core_logger(connection: Connection) -> Callable[[MessageRecord | StatusRecord, float], bool]:
        def log(entry: MessageRecord | StatusRecord, now: float) -> bool:
            if isinstance(entry, MessageRecord):
                return messagelog.log_message(connection, entry, now)  # counts outbound sends itself
            return messagelog.apply_status(connection, entry, now)

        return log

    @staticmethod
    def _sqlite_logger(connection: Connection) -> Callable[[MessageRecord | StatusRecord, float], bool]:
        # The same statements as messagelog's, on the driver's cursor: statuses are most of
        # Meta's traffic, and this runs once per ingested message and status.
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]

        def log(entry: MessageRecord | StatusRecord, now: float) -> bool:
            """True when it changed the log (a new message, a newer status)."""
            if isinstance(entry, StatusRecord):
                rank = messagelog.STATUS_RANK.get(entry.status)
                if rank is None:
                    return False
                cursor.execute(SQLITE_APPLY_STATUS, (entry.status, rank, now, entry.error_code, entry.error_title,
                                                     entry.message_id, entry.namespace, entry.tenant, rank))  # fmt: skip
                return bool(cursor.rowcount)
            at = entry.at if entry.at is not None else now
            inbound_at = at if entry.direction == "inbound" else None
            cursor.execute(SQLITE_UPSERT_CONVERSATION, (entry.conversation_id, entry.namespace, entry.tenant,
                                                        entry.phone_number_id, entry.customer, at, inbound_at, at))  # fmt: skip
            cursor.execute(SQLITE_INSERT_MESSAGE, (
                entry.id, entry.conversation_id, entry.namespace, entry.tenant, entry.phone_number_id, entry.customer,
                entry.direction, entry.type, entry.category, int(entry.business_initiated), entry.template,
                entry.context_id, entry.status, messagelog.STATUS_RANK.get(entry.status, 0), at, now, entry.body))  # fmt: skip
            return bool(cursor.rowcount)

        return log

    # -- the outbox ----------------------------------------------------------------------------

    @staticmethod
    def _due(now: float) -> Any:
        return and_(
            deliveries.c.state == "pending",
            deliveries.c.next_attempt_at <= now,
            or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
        )

    async def due_groups(self) -> dict[tuple[Target, str, str], int]:
        """How many deliveries are due per (target, namespace, tenant)."""
        query = (
            select(deliveries.c.target, deliveries.c.namespace, deliveries.c.tenant, func.count())
            .where(self._due(self.clock()))
            .group_by(deliveries.c.target, deliveries.c.namespace, deliveries.c.tenant)
        )
        rows = await self.run(lambda connection: connection.execute(query).all())
        return {(row[0], row[1], row[2]): int(row[3]) for row in rows}

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

        def work(connection: Connection) -> list[Delivery]:
            seqs = list(connection.execute(claim).scalars())
            return self._deliveries(connection, deliveries.c.seq.in_(seqs)) if seqs else []

        return await self.run(work)

    @staticmethod
    def _deliveries(connection: Connection, *where: Any, limit: int | None = None) -> list[Delivery]:
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
        names = set(Delivery.__dataclass_fields__)
        return [
            Delivery(**{k: v for k, v in row.items() if k in names})
            for row in connection.execute(query).mappings()
        ]

    async def _update(self, seq: int, **values: Any) -> None:
        statement = update(deliveries).where(deliveries.c.seq == seq).values(**values)
        await self.run(lambda connection: connection.execute(statement))

    async def mark_delivered(self, seq: int, status: int) -> None:
        await self._update(seq, state="delivered", delivered_at=self.clock(), attempts=deliveries.c.attempts + 1,
                           last_status=status, last_error=None, lease_until=None)  # fmt: skip

    async def mark_failed(self, seq: int, status: int | None, error: str, retry_at: float | None) -> None:
        """Count a failed attempt: retry at `retry_at`, or dead-letter it when that is None."""
        values: dict[str, Any] = {"attempts": deliveries.c.attempts + 1, "last_status": status,
                                  "last_error": error[:2000], "lease_until": None}  # fmt: skip
        if retry_at is None:
            values["state"] = "dead"
        else:
            values["next_attempt_at"] = retry_at
        await self._update(seq, **values)

    async def release(self, seq: int, at: float) -> None:
        """Give a claimed delivery back without counting an attempt (held, circuit open, shutdown)."""
        await self._update(seq, lease_until=None, next_attempt_at=at)

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
        return await self.run(lambda connection: self._deliveries(connection, *where, limit=limit))

    async def get_delivery(self, namespace: str, tenant: str, delivery_id: str) -> Delivery | None:
        where = (deliveries.c.namespace == namespace, deliveries.c.tenant == tenant,
                 deliveries.c.target == "tenant", deliveries.c.id == delivery_id)  # fmt: skip
        found = await self.run(lambda connection: self._deliveries(connection, *where))
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
        statement = (
            update(deliveries)
            .where(*where)
            .values(state="pending", attempts=0, next_attempt_at=self.clock(), lease_until=None)
        )
        return await self.run(lambda connection: int(connection.execute(statement).rowcount))

    # -- endpoints disabled by 410 Gone ----------------------------------------------------------

    async def disable_endpoint(self, namespace: str, tenant: str, url: str, reason: str) -> None:
        values = {
            "namespace": namespace,
            "tenant": tenant,
            "url": url,
            "disabled_at": self.clock(),
            "reason": reason,
        }
        await self.run(lambda connection: connection.execute(self._insert_disabled, values))

    async def enable_endpoint(self, namespace: str, tenant: str) -> int:
        statement = delete(disabled_endpoints).where(
            disabled_endpoints.c.namespace == namespace, disabled_endpoints.c.tenant == tenant
        )
        return await self.run(lambda connection: int(connection.execute(statement).rowcount))

    async def disabled_endpoints(self) -> dict[tuple[str, str, str], str]:
        rows = await self.run(
            lambda connection: connection.execute(select(disabled_endpoints)).mappings().all()
        )
        return {(row["namespace"], row["tenant"], row["url"]): row["reason"] for row in rows}

    # -- operations ------------------------------------------------------------------------------

    async def unroutable(self, limit: int = 100, after: int | None = None) -> list[Unroutable]:
        query = select(units).where(units.c.tenant.is_(None)).order_by(units.c.id).limit(limit)
        if after is not None:
            query = query.where(units.c.id > after)
        rows = await self.run(lambda connection: connection.execute(query).mappings().all())
        return [
            Unroutable(row["id"], row["received_at"], row["field"], row["entry_id"], row["unroutable_reason"] or "",
                       row["value"])
            for row in rows
        ]  # fmt: skip

    async def stats(self) -> OutboxStats:
        now = self.clock()

        def work(connection: Connection) -> OutboxStats:
            pending, oldest = connection.execute(
                select(func.count(), func.min(deliveries.c.created_at)).where(deliveries.c.state == "pending")
            ).one()
            dead_rows = connection.execute(
                select(deliveries.c.namespace, deliveries.c.tenant, func.count())
                .where(deliveries.c.state == "dead")
                .group_by(deliveries.c.namespace, deliveries.c.tenant)
            ).all()
            unroutable = connection.execute(select(func.count()).where(units.c.tenant.is_(None))).scalar_one()
            return OutboxStats(
                pending=int(pending),
                oldest_pending_age=max(0.0, now - float(oldest)) if oldest is not None else 0.0,
                dead_by_tenant={(row[0], row[1]): int(row[2]) for row in dead_rows},
                unroutable=int(unroutable),
            )

        return await self.run(work)

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
        old = select(units.c.id).where(units.c.received_at < now - retention_seconds, ~unfinished)

        def work(connection: Connection) -> int:
            ids = list(connection.execute(old).scalars())
            if ids:
                connection.execute(delete(deliveries).where(deliveries.c.unit_id.in_(ids)))
                connection.execute(delete(units).where(units.c.id.in_(ids)))
            return len(ids)

        return await self.run(work)

    async def purge_message_log(self, message_retention_seconds: float, idempotency_seconds: float) -> int:
        """Forget messages and conversations past their retention, and idempotency keys past theirs."""
        return await self.run(functools.partial(messagelog.purge, now=self.clock(),
                                                message_retention=message_retention_seconds,
                                                idempotency_ttl=idempotency_seconds))  # fmt: skip

    # -- conversations, the message log, idempotency ----------------------------------------------

    async def log_message(self, record: MessageRecord) -> bool:
        """Log a message; concurrent sends share one commit (see group_commit)."""
        return await self._message_logs.submit(record)

    async def send_context(self, **query: Any) -> messagelog.SendContext:
        """Everything the send policy reads (window, monthly count, reach), in one statement."""
        work = self._sqlite_send_context if self.backend == "sqlite" else messagelog.send_context
        return await self.run(functools.partial(work, **query))

    @staticmethod
    def _sqlite_send_context(connection: Connection, *, conversation: str, namespace: str, tenant: str,
                             phone_number_id: str, customer: str, now: float, reach_since: float,
                             count_reach: bool) -> messagelog.SendContext:  # fmt: skip
        # messagelog.send_context's statement, on the driver's cursor: it runs once per send.
        month, start = messagelog.month_of(now)
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        row = cursor.execute(SQLITE_SEND_CONTEXT, (
            conversation, namespace, tenant, month, phone_number_id, reach_since, customer, int(count_reach),
        )).fetchone()  # fmt: skip
        return messagelog.send_context_of(connection, row, namespace, tenant, start)

    async def last_inbound(self, conversation: str) -> float | None:
        return await self.run(functools.partial(messagelog.last_inbound, conversation=conversation))

    async def count_refusal(self, namespace: str, tenant: str, month: str, reason: str) -> None:
        await self.run(functools.partial(messagelog.count_refusal, namespace=namespace, tenant=tenant, month=month,
                                         reason=reason))  # fmt: skip

    async def conversations(self, namespace: str, tenant: str, limit: int = 100,
                            before: float | None = None) -> list[Conversation]:  # fmt: skip
        return await self.run(functools.partial(messagelog.list_conversations, namespace=namespace, tenant=tenant,
                                                limit=limit, before=before))  # fmt: skip

    async def conversation(self, namespace: str, tenant: str, conversation: str) -> Conversation | None:
        return await self.run(functools.partial(messagelog.get_conversation, namespace=namespace, tenant=tenant,
                                                conversation=conversation))  # fmt: skip

    async def conversation_messages(self, namespace: str, tenant: str, conversation: str,
                                    limit: int = 500) -> list[Message]:  # fmt: skip
        return await self.run(functools.partial(messagelog.conversation_messages, namespace=namespace,
                                                tenant=tenant, conversation=conversation, limit=limit))  # fmt: skip

    async def message(self, namespace: str, tenant: str, message_id: str) -> Message | None:
        return await self.run(functools.partial(messagelog.get_message, namespace=namespace, tenant=tenant,
                                                message_id=message_id))  # fmt: skip

    async def usage(self, namespace: str, tenant: str, month: str, start: float, end: float) -> Usage:
        return await self.run(functools.partial(messagelog.usage, namespace=namespace, tenant=tenant, month=month,
                                                start=start, end=end))  # fmt: skip

    async def remember_key(self, namespace: str, tenant: str, key: str, request_hash: str,
                           ttl: float = 86400.0) -> Remembered | None:  # fmt: skip
        return await self.run(functools.partial(messagelog.remember_key, namespace=namespace, tenant=tenant,
                                                key=key, request_hash=request_hash, now=self.clock(), ttl=ttl))  # fmt: skip

    async def settle_key(self, namespace: str, tenant: str, key: str, status: int | None,
                         response: str | None) -> None:  # fmt: skip
        await self.run(functools.partial(messagelog.settle_key, namespace=namespace, tenant=tenant, key=key,
                                         status=status, response=response))  # fmt: skip
