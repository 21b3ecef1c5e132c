"""The gateway's durable store: one interface, SQLite and PostgreSQL backends."""

from wabaplane.store.messagelog import (
    Conversation,
    Message,
    MessageRecord,
    Remembered,
    StatusRecord,
    Usage,
    conversation_id,
)
from wabaplane.store.store import (
    Delivery,
    IngestResult,
    NewUnit,
    OutboxStats,
    State,
    Store,
    StoreConfigError,
    StoreUnavailable,
    Target,
    Unroutable,
    driver_url,
)

__all__ = [
    "Conversation",
    "Delivery",
    "IngestResult",
    "Message",
    "MessageRecord",
    "NewUnit",
    "OutboxStats",
    "Remembered",
    "State",
    "StatusRecord",
    "Store",
    "StoreConfigError",
    "StoreUnavailable",
    "Target",
    "Unroutable",
    "Usage",
    "conversation_id",
    "driver_url",
]
