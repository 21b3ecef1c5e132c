"""Metrics of the custom resources' status, read from the gateway's watched view on each scrape.

The gateway already watches every Tenant, PhoneNumber and MessageTemplate it routes for, so it can
expose what the operator wrote in status (token expiry, number quality, template status) without
another API call. The chart's alerts are written against these series. Several replicas expose the
same values: aggregate with `max by (...)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from wabaplane.gateway.cluster import ClusterView


def _conditions(obj: dict[str, Any]) -> dict[str, str]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return {str(c.get("type")): str(c.get("status")) for c in conditions}


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class ResourceStatusCollector(Collector):
    def __init__(self, view: ClusterView) -> None:
        self.view = view

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready = GaugeMetricFamily("wabaplane_resource_ready", "1 when the object's Ready condition is True",
                                  labels=["namespace", "kind", "name"])  # fmt: skip
        expiring = GaugeMetricFamily("wabaplane_tenant_token_expiring",
                                     "1 while the tenant's TokenExpiring condition is True",
                                     labels=["namespace", "tenant"])  # fmt: skip
        expiry = GaugeMetricFamily("wabaplane_tenant_token_expiry_timestamp_seconds",
                                   "When the tenant's Meta token expires (absent for tokens that never expire)",
                                   labels=["namespace", "tenant"])  # fmt: skip
        quality = GaugeMetricFamily("wabaplane_phone_number_quality",
                                    "1 for the number's current quality rating (RED also when Meta flags it)",
                                    labels=["namespace", "phonenumber", "tenant", "quality"])  # fmt: skip
        template = GaugeMetricFamily("wabaplane_template_status", "1 for the template's current status at Meta",
                                     labels=["namespace", "messagetemplate", "tenant", "status"])  # fmt: skip
        for kind, plural in (("Tenant", "tenants"), ("PhoneNumber", "phonenumbers"),
                             ("MessageTemplate", "messagetemplates")):  # fmt: skip
            for (namespace, name), obj in list(self.view.objects[plural].items()):
                ready.add_metric(
                    [namespace, kind, name], 1.0 if _conditions(obj).get("Ready") == "True" else 0.0
                )
        for (namespace, name), obj in list(self.view.objects["tenants"].items()):
            status = obj.get("status") or {}
            expiring.add_metric(
                [namespace, name], 1.0 if _conditions(obj).get("TokenExpiring") == "True" else 0.0
            )
            expires_at = _timestamp(status.get("tokenExpiresAt"))
            if expires_at is not None:
                expiry.add_metric([namespace, name], expires_at)
        for (namespace, name), obj in list(self.view.objects["phonenumbers"].items()):
            rating = (obj.get("status") or {}).get("qualityRating")
            if rating:
                tenant = str(((obj.get("spec") or {}).get("tenantRef") or {}).get("name", ""))
                quality.add_metric([namespace, name, tenant, str(rating)], 1.0)
        for (namespace, name), obj in list(self.view.objects["messagetemplates"].items()):
            current = (obj.get("status") or {}).get("templateStatus")
            if current:
                tenant = str(((obj.get("spec") or {}).get("tenantRef") or {}).get("name", ""))
                template.add_metric([namespace, name, tenant, str(current)], 1.0)
        yield from (ready, expiring, expiry, quality, template)
