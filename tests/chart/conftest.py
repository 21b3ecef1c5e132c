"""Helm and the chart's rendered manifests, for the chart's tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from wabaplane.devcluster.paths import cache_root

CHART = REPO / "charts" / "wabaplane"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
KUBE_VERSION = "1.37.1"


def helm_binary() -> str:
    configured = os.environ.get("WABAPLANE_HELM")
    if configured and Path(configured).exists():
        return configured
    cached = sorted(cache_root().glob("helm-*/helm"))
    if not cached:
        pytest.fail("helm not found: `make helm` builds it (WABAPLANE_HELM names another one)")
    return str(cached[-1])


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed: {result.stderr}")
    return result


def render(*args: str, namespace: str = "wabaplane", release: str = "wp") -> list[dict[str, Any]]:
    output = helm(
        "template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION, *args
    )
    return [doc for doc in yaml.safe_load_all(output.stdout) if doc]


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def stub_monitoring_crds() -> list[dict[str, Any]]:
    """ServiceMonitor and PrometheusRule CRDs that accept any spec (the Prometheus Operator's are not here)."""

    def stub(kind: str, plural: str) -> dict[str, Any]:
        return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.monitoring.coreos.com"},
                "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                         "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                         "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                             "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}  # fmt: skip

    return [stub("ServiceMonitor", "servicemonitors"), stub("PrometheusRule", "prometheusrules")]


def as_yaml(manifests: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=False)
