"""The store's tables (SQLAlchemy Core), shared by the SQLite and PostgreSQL backends.

Times are Unix seconds as floats: one representation on both backends, compared with the
store's injectable clock.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
Id = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", Float, nullable=False),
)

# One routable piece of a Meta webhook: one message, one status, or one change of another field.
units = Table(
    "units",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(400), nullable=False, unique=True),
    Column("received_at", Float, nullable=False),
    Column("field", String(100), nullable=False),
    Column("entry_id", String(64), nullable=False),
    Column("entry_time", BigInteger, nullable=True),
    Column("value", Text, nullable=False),
    Column("namespace", String(253), nullable=True),
    Column("tenant", String(253), nullable=True),
    Column("unroutable_reason", Text, nullable=True),
    Index("units_by_tenant", "namespace", "tenant", "received_at"),
    Index("units_by_age", "received_at"),
)

# The outbox: one row per unit and destination (the tenant's endpoint or the operator).
deliveries = Table(
    "deliveries",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("unit_id", Id, ForeignKey("units.id", ondelete="CASCADE"), nullable=False),
    Column("target", String(16), nullable=False),
    Column("namespace", String(253), nullable=False),
    Column("tenant", String(253), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float, nullable=True),
    Column("delivered_at", Float, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Index("deliveries_due", "state", "next_attempt_at"),
    Index("deliveries_by_tenant", "namespace", "tenant", "seq"),
    Index("deliveries_by_unit", "unit_id"),
)

# Endpoints that answered 410 Gone: their deliveries are held until the URL changes or the
# tenant re-enables it.
disabled_endpoints = Table(
    "disabled_endpoints",
    metadata,
    Column("namespace", String(253), primary_key=True),
    Column("tenant", String(253), primary_key=True),
    Column("url", String(2048), primary_key=True),
    Column("disabled_at", Float, nullable=False),
    Column("reason", Text, nullable=False),
)
