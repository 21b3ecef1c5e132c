"""Prometheus metrics of the gateway, in a registry of its own (one per app, so tests never clash)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("wabaplane_gateway_webhook_requests_total",
                                "Webhook POSTs from Meta by outcome", ["outcome"], registry=r)  # fmt: skip
        self.received = Counter("wabaplane_gateway_webhook_units_received_total",
                                "Units received from Meta by webhook field", ["field"], registry=r)  # fmt: skip
        self.signature_failures = Counter("wabaplane_gateway_signature_failures_total",
                                          "Webhook POSTs with a missing or wrong signature", registry=r)  # fmt: skip
        self.units = Counter("wabaplane_gateway_units_total",
                             "Units by outcome (routed, unroutable, duplicate) and tenant", ["outcome", "tenant"],
                             registry=r)  # fmt: skip
        self.ingest_seconds = Histogram("wabaplane_gateway_ingest_seconds", "Time to verify, route and store a POST",
                                        buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.outbox_depth = Gauge(
            "wabaplane_gateway_outbox_pending", "Deliveries waiting in the outbox", registry=r
        )
        self.outbox_age = Gauge("wabaplane_gateway_outbox_oldest_age_seconds",
                                "Age of the oldest pending delivery", registry=r)  # fmt: skip
        self.attempts = Counter("wabaplane_gateway_delivery_attempts_total",
                                "Delivery attempts by tenant, target and outcome", ["tenant", "target", "outcome"],
                                registry=r)  # fmt: skip
        self.delivery_seconds = Histogram("wabaplane_gateway_delivery_seconds", "Delivery attempt latency",
                                          ["tenant", "target"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.dead_lettered = Counter("wabaplane_gateway_dead_lettered_total",
                                     "Deliveries moved to the dead-letter store", ["tenant", "target"], registry=r)  # fmt: skip
        self.dead_letters = Gauge("wabaplane_gateway_dead_letters", "Dead letters kept, by tenant", ["tenant"],
                                  registry=r)  # fmt: skip
        self.unroutable = Gauge("wabaplane_gateway_unroutable_units", "Unroutable units kept", registry=r)
        self.breaker_open = Gauge("wabaplane_gateway_circuit_open", "1 while a tenant endpoint's circuit is open",
                                  ["tenant"], registry=r)  # fmt: skip
        self.held = Gauge("wabaplane_gateway_deliveries_held", "Due deliveries held (suspended tenant, disabled "
                          "endpoint, missing secret)", ["tenant", "reason"], registry=r)  # fmt: skip
        self.sends = Counter("wabaplane_gateway_sends_total", "Sends forwarded to Meta by tenant and type",
                             ["tenant", "type"], registry=r)  # fmt: skip
        self.refusals = Counter("wabaplane_gateway_send_refusals_total", "Sends the gateway refused, by reason",
                                ["tenant", "reason"], registry=r)  # fmt: skip
        self.meta_errors = Counter("wabaplane_gateway_meta_errors_total", "Errors Meta answered to sends, by code",
                                   ["tenant", "code"], registry=r)  # fmt: skip
        self.send_seconds = Histogram("wabaplane_gateway_send_seconds", "Time Meta took to answer a send",
                                      ["tenant"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, memoised: label lookups are on the per-request path."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found
