"""Conversations and the message log: what was sent and received, per tenant, and its status.

Synchronous Core functions of one connection; the Store runs them in its transactions, so an
ingested status and the unit that carried it commit together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, case, exists, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from wabaplane.store.tables import conversations, idempotency_keys, messages, monthly_sends, refusals

# A status only ever moves forward (Meta's statuses arrive unordered: read may precede delivered).
STATUS_RANK = {"accepted": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}


def conversation_id(namespace: str, tenant: str, phone_number_id: str, customer: str) -> str:
    digest = hashlib.sha256(f"{namespace}/{tenant}/{phone_number_id}/{customer}".encode()).hexdigest()
    return "conv_" + digest[:32]


@dataclass(frozen=True)
class MessageRecord:
    """A message to log: an outbound send Meta accepted, or an inbound message from a webhook."""

    id: str
    namespace: str
    tenant: str
    phone_number_id: str
    customer: str
    direction: str
    type: str
    body: str
    status: str
    category: str | None = None
    business_initiated: bool = False
    template: str | None = None
    context_id: str | None = None
    at: float | None = None

    @property
    def conversation_id(self) -> str:
        return conversation_id(self.namespace, self.tenant, self.phone_number_id, self.customer)


@dataclass(frozen=True)
class StatusRecord:
    message_id: str
    namespace: str
    tenant: str
    status: str
    error_code: int | None = None
    error_title: str | None = None


@dataclass(frozen=True)
class Conversation:
    id: str
    phone_number_id: str
    customer: str
    created_at: float
    last_inbound_at: float | None
    last_message_at: float


@dataclass(frozen=True)
class Message:
    id: str
    conversation_id: str
    direction: str
    type: str
    category: str | None
    status: str
    error_code: int | None
    error_title: str | None
    context_id: str | None
    template: str | None
    created_at: float
    updated_at: float
    body: str


@dataclass
class Usage:
    messages: dict[str, dict[str, int]] = field(default_factory=dict)  # category -> status -> count
    inbound: int = 0
    conversations: int = 0
    refusals: dict[str, int] = field(default_factory=dict)


def _dialect(connection: Connection) -> Any:
    return postgresql if connection.dialect.name == "postgresql" else sqlite


def log_message(connection: Connection, record: MessageRecord, now: float) -> bool:
    """Record a message and touch its conversation; False when the message was already logged."""
    at = record.at if record.at is not None else now
    dialect = _dialect(connection)
    inbound_at = at if record.direction == "inbound" else None
    upsert = dialect.insert(conversations).values(
        id=record.conversation_id, namespace=record.namespace, tenant=record.tenant,
        phone_number_id=record.phone_number_id, customer=record.customer, created_at=at,
        last_inbound_at=inbound_at, last_message_at=at,
    )  # fmt: skip
    changes: dict[str, Any] = {"last_message_at": func.max(conversations.c.last_message_at, at)
                               if connection.dialect.name == "sqlite" else func.greatest(conversations.c.last_message_at, at)}  # fmt: skip
    if inbound_at is not None:
        current = conversations.c.last_inbound_at
        changes["last_inbound_at"] = func.max(func.coalesce(current, 0), at) if connection.dialect.name == "sqlite" \
            else func.greatest(func.coalesce(current, 0), at)  # fmt: skip
    connection.execute(upsert.on_conflict_do_update(index_elements=["id"], set_=changes))
    inserted = connection.execute(
        dialect.insert(messages)
        .values(
            id=record.id, conversation_id=record.conversation_id, namespace=record.namespace, tenant=record.tenant,
            phone_number_id=record.phone_number_id, customer=record.customer, direction=record.direction,
            type=record.type, category=record.category, business_initiated=int(record.business_initiated),
            template=record.template, context_id=record.context_id, status=record.status,
            status_rank=STATUS_RANK.get(record.status, 0), created_at=at, updated_at=now, body=record.body,
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )  # fmt: skip
    if inserted.rowcount:
        count_sends(connection, [record], now)
    return bool(inserted.rowcount)


def month_of(at: float) -> tuple[str, float]:
    """The calendar month (UTC) of a moment, as YYYY-MM, and when it began."""
    moment = datetime.fromtimestamp(at, UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return moment.strftime("%Y-%m"), start.timestamp()


def count_sends(connection: Connection, new_messages: list[MessageRecord], now: float) -> None:
    """Add the outbound ones among newly logged messages to their tenants' monthly counters."""
    grouped: dict[tuple[str, str, str], tuple[int, float]] = {}
    for record in new_messages:
        if record.direction != "outbound":
            continue
        month, start = month_of(record.at if record.at is not None else now)
        count, _ = grouped.get((record.namespace, record.tenant, month), (0, start))
        grouped[(record.namespace, record.tenant, month)] = (count + 1, start)
    for (namespace, tenant, month), (count, start) in grouped.items():
        key = and_(monthly_sends.c.namespace == namespace, monthly_sends.c.tenant == tenant,
                   monthly_sends.c.month == month)  # fmt: skip
        if connection.execute(
            update(monthly_sends).where(key).values(count=monthly_sends.c.count + count)
        ).rowcount:
            continue
        # First sends of the month here (or a store from before the counters): count the log once,
        # these messages included. A concurrent first insert on PostgreSQL cannot see them; it lands
        # in the conflict branch and adds its own.
        logged = sent_since(connection, namespace, tenant, start)
        statement = _dialect(connection).insert(monthly_sends).values(namespace=namespace, tenant=tenant,
                                                                      month=month, count=logged)  # fmt: skip
        connection.execute(statement.on_conflict_do_update(
            index_elements=["namespace", "tenant", "month"], set_={"count": monthly_sends.c.count + count}))  # fmt: skip


@dataclass(frozen=True)
class SendContext:
    """What the send policy needs from the store, read in one transaction."""

    last_inbound: float | None
    sent_this_month: int
    customer_reached: bool
    reached: int | None  # customers reached outside a window; only counted when it can matter


def send_context(connection: Connection, *, conversation: str, namespace: str, tenant: str, phone_number_id: str,
                 customer: str, now: float, reach_since: float, count_reach: bool) -> SendContext:  # fmt: skip
    """One statement (one round trip) on the send path; the reach is counted only when it can matter."""
    month, start = month_of(now)
    reach = and_(messages.c.phone_number_id == phone_number_id, messages.c.business_initiated == 1,
                 messages.c.created_at >= reach_since)  # fmt: skip
    reached_before = exists().where(reach, messages.c.customer == customer)
    row = connection.execute(select(
        select(conversations.c.last_inbound_at).where(conversations.c.id == conversation).scalar_subquery(),
        select(monthly_sends.c.count).where(monthly_sends.c.namespace == namespace, monthly_sends.c.tenant == tenant,
                                            monthly_sends.c.month == month).scalar_subquery(),
        reached_before,
        case((and_(literal(count_reach), ~reached_before),
              select(func.count(messages.c.customer.distinct())).where(reach).scalar_subquery()), else_=None),
    )).one()  # fmt: skip
    return send_context_of(connection, tuple(row), namespace, tenant, start)


def send_context_of(connection: Connection, row: tuple[Any, ...], namespace: str, tenant: str,
                    month_start: float) -> SendContext:  # fmt: skip
    """The SendContext of the send-context statement's row (last inbound, month count, reached, reach).

    A month without a counter row yet (a store from before the counters) counts the log once.
    """
    last, counted, already, reached = row
    sent = int(counted) if counted is not None else sent_since(connection, namespace, tenant, month_start)
    return SendContext(float(last) if last is not None else None, sent, bool(already),
                       int(reached) if reached is not None else None)  # fmt: skip


def apply_status(connection: Connection, record: StatusRecord, now: float) -> bool:
    """Move a logged message's status forward; False when unknown, another tenant's, or not newer."""
    rank = STATUS_RANK.get(record.status)
    if rank is None:
        return False
    result = connection.execute(
        update(messages)
        .where(messages.c.id == record.message_id, messages.c.namespace == record.namespace,
               messages.c.tenant == record.tenant, messages.c.status_rank < rank)
        .values(status=record.status, status_rank=rank, updated_at=now, error_code=record.error_code,
                error_title=record.error_title)
    )  # fmt: skip
    return bool(result.rowcount)


def last_inbound(connection: Connection, conversation: str) -> float | None:
    value = connection.execute(
        select(conversations.c.last_inbound_at).where(conversations.c.id == conversation)
    ).scalar()
    return float(value) if value is not None else None


def sent_since(connection: Connection, namespace: str, tenant: str, since: float) -> int:
    return int(
        connection.execute(
            select(func.count()).where(messages.c.namespace == namespace, messages.c.tenant == tenant,
                                       messages.c.direction == "outbound", messages.c.created_at >= since)
        ).scalar_one()
    )  # fmt: skip


def count_refusal(connection: Connection, namespace: str, tenant: str, month: str, reason: str) -> None:
    dialect = _dialect(connection)
    statement = dialect.insert(refusals).values(namespace=namespace, tenant=tenant, month=month, reason=reason,
                                                count=1)  # fmt: skip
    connection.execute(statement.on_conflict_do_update(
        index_elements=["namespace", "tenant", "month", "reason"], set_={"count": refusals.c.count + 1}))  # fmt: skip


def list_conversations(connection: Connection, namespace: str, tenant: str, limit: int,
                       before: float | None) -> list[Conversation]:  # fmt: skip
    query = select(conversations).where(
        conversations.c.namespace == namespace, conversations.c.tenant == tenant
    )
    if before is not None:
        query = query.where(conversations.c.last_message_at < before)
    query = query.order_by(conversations.c.last_message_at.desc()).limit(limit)
    return [
        Conversation(row["id"], row["phone_number_id"], row["customer"], row["created_at"], row["last_inbound_at"],
                     row["last_message_at"])
        for row in connection.execute(query).mappings()
    ]  # fmt: skip


def get_conversation(
    connection: Connection, namespace: str, tenant: str, conversation: str
) -> Conversation | None:
    found = connection.execute(
        select(conversations).where(conversations.c.id == conversation, conversations.c.namespace == namespace,
                                    conversations.c.tenant == tenant)
    ).mappings().first()  # fmt: skip
    if found is None:
        return None
    return Conversation(found["id"], found["phone_number_id"], found["customer"], found["created_at"],
                        found["last_inbound_at"], found["last_message_at"])  # fmt: skip


def _message(row: Any) -> Message:
    return Message(row["id"], row["conversation_id"], row["direction"], row["type"], row["category"], row["status"],
                   row["error_code"], row["error_title"], row["context_id"], row["template"], row["created_at"],
                   row["updated_at"], row["body"])  # fmt: skip


def conversation_messages(connection: Connection, namespace: str, tenant: str, conversation: str,
                          limit: int) -> list[Message]:  # fmt: skip
    query = (
        select(messages)
        .where(messages.c.conversation_id == conversation, messages.c.namespace == namespace,
               messages.c.tenant == tenant)
        .order_by(messages.c.created_at, messages.c.id)
        .limit(limit)
    )  # fmt: skip
    return [_message(row) for row in connection.execute(query).mappings()]


def get_message(connection: Connection, namespace: str, tenant: str, message_id: str) -> Message | None:
    row = connection.execute(
        select(messages).where(messages.c.id == message_id, messages.c.namespace == namespace,
                               messages.c.tenant == tenant)
    ).mappings().first()  # fmt: skip
    return _message(row) if row is not None else None


def usage(connection: Connection, namespace: str, tenant: str, month: str, start: float, end: float) -> Usage:
    result = Usage()
    mine = and_(messages.c.namespace == namespace, messages.c.tenant == tenant, messages.c.created_at >= start,
                messages.c.created_at < end)  # fmt: skip
    rows = connection.execute(
        select(messages.c.direction, messages.c.category, messages.c.status, func.count())
        .where(mine)
        .group_by(messages.c.direction, messages.c.category, messages.c.status)
    )
    for direction, category, status, count in rows:
        if direction == "inbound":
            result.inbound += int(count)
        else:
            result.messages.setdefault(category or "unknown", {})[status] = int(count)
    result.conversations = int(
        connection.execute(
            select(func.count(func.distinct(messages.c.conversation_id))).where(mine)
        ).scalar_one()
    )
    for reason, count in connection.execute(
        select(refusals.c.reason, refusals.c.count).where(
            refusals.c.namespace == namespace, refusals.c.tenant == tenant, refusals.c.month == month)
    ):  # fmt: skip
        result.refusals[reason] = int(count)
    return result


# -- Idempotency-Key ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Remembered:
    request_hash: str
    status: int | None
    response: str | None


def remember_key(connection: Connection, namespace: str, tenant: str, key: str, request_hash: str, now: float,
                 ttl: float) -> Remembered | None:  # fmt: skip
    """Claim the key for this request (None), or return what an earlier request under it left."""
    where = (idempotency_keys.c.namespace == namespace, idempotency_keys.c.tenant == tenant,
             idempotency_keys.c.key == key)  # fmt: skip
    connection.execute(idempotency_keys.delete().where(*where, idempotency_keys.c.created_at < now - ttl))
    inserted = connection.execute(
        _dialect(connection).insert(idempotency_keys)
        .values(namespace=namespace, tenant=tenant, key=key, request_hash=request_hash, created_at=now)
        .on_conflict_do_nothing()
    )  # fmt: skip
    if inserted.rowcount:
        return None
    row = connection.execute(select(idempotency_keys).where(*where)).mappings().one()
    return Remembered(row["request_hash"], row["status"], row["response"])


def settle_key(connection: Connection, namespace: str, tenant: str, key: str, status: int | None,
               response: str | None) -> None:  # fmt: skip
    """Store the answer under the key; `status` None forgets the key (nothing was sent)."""
    where = (idempotency_keys.c.namespace == namespace, idempotency_keys.c.tenant == tenant,
             idempotency_keys.c.key == key)  # fmt: skip
    if status is None:
        connection.execute(idempotency_keys.delete().where(*where))
    else:
        connection.execute(update(idempotency_keys).where(*where).values(status=status, response=response))


def purge(connection: Connection, now: float, message_retention: float, idempotency_ttl: float) -> int:
    forgotten = connection.execute(
        messages.delete().where(messages.c.created_at < now - message_retention)
    ).rowcount
    connection.execute(
        conversations.delete().where(conversations.c.last_message_at < now - message_retention)
    )
    forgotten += connection.execute(
        idempotency_keys.delete().where(idempotency_keys.c.created_at < now - idempotency_ttl)
    ).rowcount
    return int(forgotten)
