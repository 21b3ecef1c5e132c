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

# -- the send side (migration 2) ------------------------------------------------------------------

# The thread between one business number and one customer, per tenant; the id is derived from
# those four, so every replica names a conversation the same way without asking the database.
conversations = Table(
    "conversations",
    metadata,
    Column("id", String(48), primary_key=True),
    Column("namespace", String(253), nullable=False),
    Column("tenant", String(253), nullable=False),
    Column("phone_number_id", String(64), nullable=False),
    Column("customer", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_inbound_at", Float, nullable=True),
    Column("last_message_at", Float, nullable=False),
    Index("conversations_by_tenant", "namespace", "tenant", "last_message_at"),
)

# Every message in and out, with its latest status (never moving backwards).
messages = Table(
    "messages",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("conversation_id", String(48), nullable=False),
    Column("namespace", String(253), nullable=False),
    Column("tenant", String(253), nullable=False),
    Column("phone_number_id", String(64), nullable=False),
    Column("customer", String(64), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("type", String(32), nullable=False),
    Column("category", String(32), nullable=True),
    Column("business_initiated", Integer, nullable=False, default=0),
    Column("template", String(600), nullable=True),
    Column("context_id", String(200), nullable=True),
    Column("status", String(16), nullable=False),
    Column("status_rank", Integer, nullable=False),
    Column("error_code", Integer, nullable=True),
    Column("error_title", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    Index("messages_by_conversation", "conversation_id", "created_at"),
    Index("messages_by_tenant", "namespace", "tenant", "created_at"),
    Index("messages_reach", "phone_number_id", "business_initiated", "created_at"),
    # "Has this number reached this customer outside a window lately?" without scanning its range.
    Index("messages_reach_by_customer", "phone_number_id", "customer", "business_initiated", "created_at"),
)

# Outbound messages per tenant and calendar month (UTC): the monthly cap reads one row instead of
# counting the log on every send.
monthly_sends = Table(
    "monthly_sends",
    metadata,
    Column("namespace", String(253), primary_key=True),
    Column("tenant", String(253), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("count", Integer, nullable=False),
)

# Idempotency-Key memory of the send API, shared by every replica.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("namespace", String(253), primary_key=True),
    Column("tenant", String(253), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer, nullable=True),
    Column("response", Text, nullable=True),
    Column("created_at", Float, nullable=False),
)

# Sends the gateway refused, counted per tenant, month and reason (for usage).
refusals = Table(
    "refusals",
    metadata,
    Column("namespace", String(253), primary_key=True),
    Column("tenant", String(253), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("reason", String(64), primary_key=True),
    Column("count", Integer, nullable=False),
)
