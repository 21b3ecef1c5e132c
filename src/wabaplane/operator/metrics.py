"""The operator's Prometheus metrics, served on the management port."""

from __future__ import annotations

from prometheus_client import Counter

MANAGEMENT_EVENTS = Counter(
    "wabaplane_operator_management_events_total",
    "Management events received from the gateway",
    ["field", "outcome"],
)
RECONCILES = Counter(
    "wabaplane_operator_reconciles_total",
    "Reconciles this replica finished (status written), by kind and the Ready status they left",
    ["kind", "ready"],
)
