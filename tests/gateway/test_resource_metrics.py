"""The gateway exposes the resources' status from its watched view: what the chart's alerts read."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import make_view, number_obj, tenant_obj
from wabaplane.gateway.resource_metrics import ResourceStatusCollector


def samples(view: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(ResourceStatusCollector(view))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_status_of_tenants_numbers_and_templates_becomes_series() -> None:
    acme = tenant_obj("team-a", "acme", "1", None)
    acme["status"]["tokenExpiresAt"] = "2027-01-01T00:00:00Z"
    acme["status"]["conditions"] += [
        {"type": "Ready", "status": "True"},
        {"type": "TokenExpiring", "status": "True"},
    ]
    globex = tenant_obj("team-b", "globex", "2", None)
    red = number_obj("team-a", "support", "acme", "10", "15550100001")
    red["status"]["qualityRating"] = "RED"
    view = make_view([acme, globex], [red], [])
    template = {"metadata": {"namespace": "team-a", "name": "order-update-en"},
                "spec": {"tenantRef": {"name": "acme"}, "name": "order_update", "language": "en_US"},
                "status": {"templateStatus": "PAUSED", "conditions": [{"type": "Ready", "status": "False"}]}}  # fmt: skip
    view.load("messagetemplates", [template])
    found = samples(view)
    assert found[("wabaplane_tenant_token_expiring", (("namespace", "team-a"), ("tenant", "acme")))] == 1
    assert found[("wabaplane_tenant_token_expiring", (("namespace", "team-b"), ("tenant", "globex")))] == 0
    expiry = (
        "wabaplane_tenant_token_expiry_timestamp_seconds",
        (("namespace", "team-a"), ("tenant", "acme")),
    )
    assert found[expiry] == 1798761600
    assert not any(name == expiry[0] and ("tenant", "globex") in labels for name, labels in found), (
        "a token without expiry has no expiry series"
    )
    quality = ("wabaplane_phone_number_quality",
               (("namespace", "team-a"), ("phonenumber", "support"), ("quality", "RED"), ("tenant", "acme")))  # fmt: skip
    assert found[quality] == 1
    paused = ("wabaplane_template_status", (("messagetemplate", "order-update-en"), ("namespace", "team-a"),
                                            ("status", "PAUSED"), ("tenant", "acme")))  # fmt: skip
    assert found[paused] == 1
    ready = {labels: value for (name, labels), value in found.items() if name == "wabaplane_resource_ready"}
    assert ready[(("kind", "Tenant"), ("name", "acme"), ("namespace", "team-a"))] == 1
    assert ready[(("kind", "Tenant"), ("name", "globex"), ("namespace", "team-b"))] == 0
    assert ready[(("kind", "PhoneNumber"), ("name", "support"), ("namespace", "team-a"))] == 1
    assert ready[(("kind", "MessageTemplate"), ("name", "order-update-en"), ("namespace", "team-a"))] == 0
