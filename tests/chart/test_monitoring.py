"""The chart's alerts and dashboard name only metrics that wabaplane exposes, with labels it sets."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client import REGISTRY

from tests.chart.conftest import CHART
from wabaplane.gateway.cluster import ClusterView
from wabaplane.gateway.metrics import GatewayMetrics
from wabaplane.gateway.resource_metrics import ResourceStatusCollector
from wabaplane.operator import management  # noqa: F401 - registers the operator's metrics

METRIC = re.compile(r"\b(wabaplane_[a-z_]+)")


def exposed() -> set[str]:
    """Every series name wabaplane exposes (with the suffixes counters and histograms add)."""
    gateway = GatewayMetrics()
    gateway.registry.register(ResourceStatusCollector(ClusterView()))
    return {
        family.name + suffix
        for registry in (gateway.registry, REGISTRY)
        for family in registry.collect()
        if family.name.startswith("wabaplane_")
        for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }


def test_alerts_and_dashboard_use_exposed_metrics() -> None:
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    known = exposed()
    used = {name for expression in expressions for name in METRIC.findall(expression)}
    assert used, "the rules name metrics"
    assert sorted(used - known) == []


def test_every_alert_has_a_summary_and_severity() -> None:
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {a["alert"] for a in alerts} >= {"WabaplaneTokenExpiring", "WabaplanePhoneNumberQualityRed",
                                            "WabaplaneTemplateRejectedOrPaused", "WabaplaneDeadLettersGrowing",
                                            "WabaplaneOutboxBacklog", "WabaplaneUnroutableEvents",
                                            "WabaplaneWebhookSignatureFailures", "WabaplaneResourceNotReady"}  # fmt: skip
    for alert in alerts:
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"]


def test_the_dashboard_has_per_tenant_panels() -> None:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "tenant" in variables
    per_tenant = [
        p for p in dashboard["panels"] if any('tenant=~"$tenant"' in t["expr"] for t in p["targets"])
    ]
    assert len(per_tenant) >= 8
