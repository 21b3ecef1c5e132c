"""Versioned schema migrations, applied in order at startup, each exactly once.

Every step is recorded in `schema_migrations`. On PostgreSQL several gateway replicas may start at
once, so the steps run under a transaction-scoped advisory lock; SQLite serialises writers itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, select, text

from wabaplane.store import tables

# Any constant shared by every replica; it names this lock in pg_locks.
ADVISORY_LOCK_ID = 0x77616261


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _initial(connection: Connection) -> None:
    tables.metadata.create_all(
        connection, tables=[tables.units, tables.deliveries, tables.disabled_endpoints]
    )


def _send_side(connection: Connection) -> None:
    tables.metadata.create_all(
        connection,
        tables=[tables.conversations, tables.messages, tables.idempotency_keys, tables.refusals],
    )


def _send_counters(connection: Connection) -> None:
    tables.metadata.create_all(connection, tables=[tables.monthly_sends])
    for index in tables.messages.indexes:
        if index.name == "messages_reach_by_customer":
            # Databases created after this index joined the table already have it.
            index.create(connection, checkfirst=True)


MIGRATIONS = [
    Migration(1, "units, the delivery outbox and disabled endpoints", _initial),
    Migration(2, "conversations, the message log, idempotency keys and refusals", _send_side),
    Migration(3, "monthly send counters and the reach-by-customer index", _send_counters),
]


def migrate(connection: Connection) -> list[int]:
    """Apply the pending migrations in the caller's transaction; returns the versions applied now."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
    tables.schema_migrations.create(connection, checkfirst=True)
    done = set(connection.execute(select(tables.schema_migrations.c.version)).scalars())
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        migration.apply(connection)
        connection.execute(
            tables.schema_migrations.insert().values(
                version=migration.version, description=migration.description, applied_at=time.time()
            )
        )
        applied.append(migration.version)
    return applied
