"""The chart against the real API server: accepted as rendered, restricted pod security, and roles that
are enough for the operator and the gateway to do their work and allow nothing more."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, CI_VALUES, as_yaml, helm, render, stub_monitoring_crds
from tests.conftest import EXAMPLES_DIR, REPO, Kube, wait_for
from tests.operator.replicas import install_peering_crd, peers, replica

pytestmark = pytest.mark.cluster
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
DEFAULT_VALUES = str(CHART / "ci" / "default-values.yaml")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Scratch:
    """Namespaces and cluster-scoped objects a test makes, all removed afterwards."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.namespaces: list[str] = []
        self.cluster_objects: list[tuple[str, str]] = []

    def namespace(self, name: str, **labels: str) -> str:
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        self.kube.run("apply", "-f", "-", stdin=json.dumps(manifest))
        self.namespaces.append(name)
        return name

    def apply(self, manifests: list[dict[str, Any]], *args: str) -> str:
        self.cluster_objects += [(m["kind"], m["metadata"]["name"]) for m in manifests
                                 if m["kind"] in {"ClusterRole", "ClusterRoleBinding"}]  # fmt: skip
        return self.kube.run("apply", *args, "-f", "-", stdin=as_yaml(manifests)).stdout + ""

    def cleanup(self) -> None:
        for kind, name in self.cluster_objects:
            self.kube.run("delete", kind.lower(), name, "--ignore-not-found")
        for name in self.namespaces:
            self.kube.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def scratch(kube: Kube) -> Iterator[Scratch]:
    made = Scratch(kube)
    yield made
    made.cleanup()


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda path: Path(path).stem)
def test_rendered_manifests_are_accepted_by_the_api_server(
    kube: Kube, scratch: Scratch, values: Path
) -> None:
    kube.run("apply", "--server-side", "-f", "-", stdin=as_yaml(stub_monitoring_crds()))
    kube.run("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com",
             "crd/prometheusrules.monitoring.coreos.com")  # fmt: skip
    release_namespace = scratch.namespace(unique("wp-chart"))
    for watched in yaml.safe_load(values.read_text()).get("watchNamespaces") or []:
        scratch.namespace(watched)
    manifests = render("-f", str(values), namespace=release_namespace, release=unique("wp"))
    result = kube.run("apply", "--server-side", "--force-conflicts", "--dry-run=server",
                      "-f", "-", stdin=as_yaml(manifests), check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(manifests)
    assert "Warning" not in result.stderr


def test_both_pods_pass_the_restricted_pod_security_standard(kube: Kube, scratch: Scratch) -> None:
    namespace = scratch.namespace(unique("wp-restricted"), **{"pod-security.kubernetes.io/enforce": "restricted",
                                                               "pod-security.kubernetes.io/warn": "restricted"})  # fmt: skip
    # Enforcement is on: a pod that is not restricted is refused in this namespace.
    loose = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loose"},
             "spec": {"containers": [{"name": "c", "image": "busybox"}]}}  # fmt: skip
    refused = kube.run(
        "apply", "-n", namespace, "--dry-run=server", "-f", "-", stdin=json.dumps(loose), check=False
    )
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr
    release = unique("wp")
    manifests = [m for m in render("-f", DEFAULT_VALUES, "--set", "crds.enabled=false", namespace=namespace,
                                   release=release) if m["kind"] not in CLUSTER_SCOPED]  # fmt: skip
    applied = kube.run("apply", "-n", namespace, "-f", "-", stdin=as_yaml(manifests))
    assert "PodSecurity" not in applied.stderr
    # The ReplicaSet controller creates the pods only if admission accepts them.
    for component in ("operator", "gateway"):
        selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component={component}"

        def created(selector: str = selector) -> bool:
            pods = json.loads(kube.run("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)
            return len(pods["items"]) == 1

        wait_for(created, timeout=60, what=f"the {component} pod to be admitted")


def service_account_kubeconfig(kube: Kube, release: Release, component: str, path: Path) -> Path:
    """A kubeconfig holding a token of the release's ServiceAccount for the component."""
    account = release.account(component)
    token = kube.run("create", "token", account, "-n", release.namespace, "--duration=1h").stdout.strip()
    config = yaml.safe_load(kube.kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": account}))  # fmt: skip
    return path


@dataclass
class Release:
    name: str
    namespace: str
    tenants: str

    def account(self, component: str) -> str:
        return f"{self.name}-wabaplane-{component}"


def install_rbac(scratch: Scratch, *settings: str) -> Release:
    """The chart's RBAC for a new release in its own namespace, watching one tenants namespace."""
    release = Release(
        unique("wp"), scratch.namespace(unique("wp-system")), scratch.namespace(unique("wp-tenants"))
    )
    manifests = render("-f", DEFAULT_VALUES, "--set", f"watchNamespaces={{{release.tenants}}}", *settings,
                       namespace=release.namespace, release=release.name)  # fmt: skip
    scratch.apply([m for m in manifests if m["kind"] in RBAC_KINDS])
    return release


def test_the_chart_roles_are_enough_for_the_whole_scenario(
    kube: Kube, scratch: Scratch, tmp_path: Path
) -> None:
    release = install_rbac(scratch)
    operator = service_account_kubeconfig(kube, release, "operator", tmp_path / "operator.kubeconfig")
    gateway = service_account_kubeconfig(kube, release, "gateway", tmp_path / "gateway.kubeconfig")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "wabaplane"), "dev", "--once", "--kubeconfig", str(kube.kubeconfig),
         "--namespace", release.tenants, "--existing-namespace", "--examples", str(EXAMPLES_DIR),
         "--operator-kubeconfig", str(operator), "--gateway-kubeconfig", str(gateway), "--keep-logs"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "Every step passed." in result.stdout
    left = json.loads(
        kube.run("get", "tenants,phonenumbers,messagetemplates", "-n", release.tenants, "-o", "json").stdout
    )
    assert left["items"] == [], "the demo deleted what it applied, through the operator's finalizers"


ALLOWED = [
    ("gateway", "list", "secrets", "tenants"),
    ("gateway", "watch", "tenants.wabaplane.io", "tenants"),
    ("operator", "patch", "tenants.wabaplane.io/status", "tenants"),
    ("operator", "create", "secrets", "tenants"),
    ("operator", "create", "events", "tenants"),
    ("operator", "watch", "namespaces", "all"),
]
REFUSED = [
    ("gateway", "list", "secrets", "all"),
    ("gateway", "list", "secrets", "other"),
    ("gateway", "get", "secrets", "tenants"),
    ("gateway", "patch", "tenants.wabaplane.io", "tenants"),
    ("gateway", "create", "secrets", "tenants"),
    ("gateway", "delete", "tenants.wabaplane.io", "tenants"),
    ("operator", "list", "secrets", "all"),
    ("operator", "list", "secrets", "tenants"),
    ("operator", "watch", "secrets", "tenants"),
    ("operator", "get", "secrets", "other"),
    ("operator", "patch", "tenants.wabaplane.io", "other"),
    ("operator", "create", "pods", "tenants"),
    ("operator", "delete", "namespaces", "all"),
    ("operator", "escalate", "roles", "tenants"),
    ("operator", "bind", "clusterroles", "all"),
    ("operator", "impersonate", "users", "all"),
    ("gateway", "impersonate", "serviceaccounts", "tenants"),
    ("operator", "*", "*", "all"),
]


def test_what_the_service_accounts_may_and_may_not_do(kube: Kube, scratch: Scratch) -> None:
    release = install_rbac(scratch)
    other = scratch.namespace(unique("wp-other"))

    def can(component: str, verb: str, resource: str, where: str) -> bool:
        scope = (
            ["--all-namespaces"]
            if where == "all"
            else ["-n", {"tenants": release.tenants, "other": other}[where]]
        )
        account = f"system:serviceaccount:{release.namespace}:{release.account(component)}"
        result = kube.run("auth", "can-i", verb, resource, *scope, f"--as={account}", check=False)
        return result.stdout.strip() == "yes"

    assert [case for case in ALLOWED if not can(*case)] == []
    assert [case for case in REFUSED if can(*case)] == []


def test_helm_install_then_upgrade_keeps_the_generated_tokens(kube: Kube, scratch: Scratch) -> None:
    release = unique("wp")
    namespace = scratch.namespace(unique("wp-helm"))
    common = ["--namespace", namespace, "--kubeconfig", str(kube.kubeconfig), "-f", DEFAULT_VALUES,
              "--set", "crds.enabled=false"]  # fmt: skip
    scratch.cluster_objects += [("ClusterRole", f"{release}-wabaplane-operator"),
                                ("ClusterRoleBinding", f"{release}-wabaplane-operator")]  # fmt: skip
    helm("install", release, str(CHART), *common)

    def tokens() -> dict[str, str]:
        secret = json.loads(kube.run("get", "secret", f"{release}-wabaplane-internal", "-n", namespace,
                                     "-o", "json").stdout)  # fmt: skip
        return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}

    first = tokens()
    assert set(first) == {"management-token", "admin-token"}
    assert all(len(value) == 40 for value in first.values())
    helm("upgrade", release, str(CHART), *common, "--set", "gateway.maxInFlightRequests=128")
    assert tokens() == first
    helm("uninstall", release, "--namespace", namespace, "--kubeconfig", str(kube.kubeconfig))


def test_peering_operator_replicas_work_with_the_chart_roles(
    kube: Kube, scratch: Scratch, tmp_path: Path
) -> None:
    release = install_rbac(scratch, "--set", "operator.replicas=2")
    install_peering_crd(kube)
    credentials = service_account_kubeconfig(kube, release, "operator", tmp_path / "operator.kubeconfig")
    # The chart names the peering object after the operator. Meta is never called: no tenant here.
    peering, tenants = release.account("operator"), release.tenants
    with replica(credentials, tenants, "http://127.0.0.1:9", tmp_path, "first", peering):
        wait_for(lambda: set(peers(kube, tenants, peering)) == {"first"}, what="the first replica peered")
        with replica(credentials, tenants, "http://127.0.0.1:9", tmp_path, "second", peering):
            wait_for(lambda: set(peers(kube, tenants, peering)) == {"first", "second"}, what="both peered")
