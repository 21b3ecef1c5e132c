"""The gateway's durable store: one interface, SQLite and PostgreSQL backends."""

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
    "Delivery",
    "IngestResult",
    "NewUnit",
    "OutboxStats",
    "State",
    "Store",
    "StoreConfigError",
    "StoreUnavailable",
    "Target",
    "Unroutable",
    "driver_url",
]
