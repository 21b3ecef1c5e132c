"""The chart without a cluster: lint, generated files, values schema, refusals, RBAC and pod security."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from tests.chart.conftest import CHART, CI_VALUES, by_kind, helm, render
from tests.conftest import CRDS_DIR
from wabaplane.chart.render import chart_readme, values_schema, values_yaml
from wabaplane.chart.values import Values

FORBIDDEN_VERBS = {"*", "escalate", "bind", "impersonate"}


def test_generated_files_are_current() -> None:
    assert (CHART / "values.yaml").read_text() == values_yaml(), "run `make chart`"
    assert json.loads((CHART / "values.schema.json").read_text()) == values_schema(), "run `make chart`"
    readme = (CHART / "README.md").read_text()
    assert readme == chart_readme(readme), "the README's values table is stale: run `make chart`"
    for crd in sorted(CRDS_DIR.glob("*.yaml")):
        assert (CHART / "files" / "crds" / crd.name).read_bytes() == crd.read_bytes(), (
            f"{crd.name}: run `make chart`"
        )


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda path: Path(path).stem)
def test_lint_strict(values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values), "--kube-version", "1.37.1")
    assert "0 chart(s) failed" in result.stdout


def test_every_schema_object_is_closed() -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{where} accepts unknown keys"
            for key, child in node.items():
                walk(child, f"{where}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{where}/{index}")

    walk(json.loads((CHART / "values.schema.json").read_text()), "")


def test_every_value_is_documented() -> None:
    """values.yaml is generated from the models (checked above), each key under a comment naming it."""

    def walk(model: type[BaseModel], where: str) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{where}.{field.alias or name} has no description"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{where}.{field.alias or name}")

    walk(Values, "values")
    lines = (CHART / "values.yaml").read_text().splitlines()
    # Every key line that is not inside a documented map's default (e.g. resources.requests).
    keys = [(n, line.strip().split(":", 1)[0]) for n, line in enumerate(lines)
            if line.strip() and not line.strip().startswith(("#", "-")) and lines[n - 1].strip().startswith("#")]  # fmt: skip
    assert len(keys) > 40
    for number, key in keys:
        above = "\n".join(lines[max(0, number - 4) : number])
        assert f"# {key}:" in above, f"values.yaml line {number + 1}: {key} is not documented"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["--set", "gateway.replicaCont=2"], "additional properties 'replicaCont' not allowed"),
        (["--set", "gateway.store.type=mysql"], "gateway/store/type"),
        (["--set", "gateway.replicaCount=0"], "gateway/replicaCount"),
        (["--set", "gateway.replicaCount=3"], "sqlite supports exactly one gateway replica"),
        (["--set", "gateway.autoscaling.enabled=true"], "sqlite supports exactly one gateway replica"),
        (["--set", "gateway.store.type=postgresql"], "needs gateway.store.postgresql.existingSecret"),
        ([], "meta.appId is required (or give meta.existingSecret)"),
    ],
)
def test_impossible_values_are_refused_with_what_to_fix(settings: list[str], message: str) -> None:
    result = helm("template", "wp", str(CHART), "--kube-version", "1.37.1", *settings, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_crds_are_the_repository_crds_kept_on_uninstall() -> None:
    expected = {
        crd["metadata"]["name"]: crd
        for crd in (yaml.safe_load(p.read_text()) for p in CRDS_DIR.glob("*.yaml"))
    }
    rendered = by_kind(render("-f", str(CHART / "ci" / "default-values.yaml")), "CustomResourceDefinition")
    assert {crd["metadata"]["name"] for crd in rendered} == set(expected)
    for crd in rendered:
        metadata = crd["metadata"]
        assert metadata.pop("annotations") == {"helm.sh/resource-policy": "keep"}
        labels = metadata.pop("labels")
        original = expected[metadata["name"]]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels.items() >= original["metadata"]["labels"].items()
        metadata["labels"] = original["metadata"]["labels"]
        assert crd == original
    unkept = render("-f", str(CHART / "ci" / "default-values.yaml"), "--set", "crds.keep=false")
    assert all("annotations" not in crd["metadata"] for crd in by_kind(unkept, "CustomResourceDefinition"))
    assert not by_kind(render("-f", str(CHART / "ci" / "minimal-values.yaml")), "CustomResourceDefinition")


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda path: Path(path).stem)
def test_rbac_is_least_privilege(values: Path) -> None:
    manifests = render("-f", str(values))
    for role in by_kind(manifests, "ClusterRole") + by_kind(manifests, "Role"):
        for rule in role["rules"]:
            everything = set(rule["verbs"]) | set(rule["resources"]) | set(rule["apiGroups"])
            assert not everything & FORBIDDEN_VERBS, f"{role['metadata']['name']}: {rule}"
    for cluster_role in by_kind(manifests, "ClusterRole"):
        for rule in cluster_role["rules"]:
            assert "secrets" not in rule["resources"], "no cluster-wide access to Secrets"
            assert set(rule["verbs"]) <= {"get", "list", "watch"}
    gateway_roles = [r for r in by_kind(manifests, "Role") if r["metadata"]["name"].endswith("-gateway")]
    assert gateway_roles
    for role in gateway_roles:
        for rule in role["rules"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, "the gateway only reads the cluster"
    watched = yaml.safe_load(values.read_text()).get("watchNamespaces") or ["wabaplane"]
    assert sorted({r["metadata"]["namespace"] for r in gateway_roles}) == sorted(watched)
    source = (CHART / "templates" / "operator-rbac.yaml").read_text()
    assert "# Framework:" in source
    assert "# Application:" in source


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda path: Path(path).stem)
def test_pods_are_restricted_and_sized(values: Path) -> None:
    for deployment in by_kind(render("-f", str(values)), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"]
            assert container["resources"]["limits"]["memory"]
            assert "livenessProbe" in container


def test_one_operator_replica_runs_alone() -> None:
    manifests = render("-f", str(CHART / "ci" / "default-values.yaml"))
    (operator,) = [
        d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"] == "wp-wabaplane-operator"
    ]
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert not [arg for arg in container["args"] if arg.startswith("--peering")]
    assert "POD_ID" not in {e["name"] for e in container["env"]}
    assert "kopfpeerings.kopf.dev" not in {
        c["metadata"]["name"] for c in by_kind(manifests, "CustomResourceDefinition")
    }
    assert not any(
        "kopf.dev" in rule["apiGroups"] for role in by_kind(manifests, "Role") for rule in role["rules"]
    )
    assert [p["metadata"]["name"] for p in by_kind(manifests, "PodDisruptionBudget")] == [
        "wp-wabaplane-gateway"
    ]


def test_several_operator_replicas_peer() -> None:
    manifests = render("-f", str(CHART / "ci" / "ha-values.yaml"))
    (operator,) = [
        d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"] == "wp-wabaplane-operator"
    ]
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["strategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}  # fmt: skip
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert "--peering=wp-wabaplane-operator" in container["args"]
    assert "--peering-lifetime=60" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    (crd,) = [
        c
        for c in by_kind(manifests, "CustomResourceDefinition")
        if c["metadata"]["name"] == "kopfpeerings.kopf.dev"
    ]
    assert crd["spec"] == yaml.safe_load((CHART / "files" / "kopfpeerings.yaml").read_text())["spec"]
    operator_roles = [
        r for r in by_kind(manifests, "Role") if r["metadata"]["name"] == "wp-wabaplane-operator"
    ]
    assert sorted(r["metadata"]["namespace"] for r in operator_roles) == [
        "wabaplane-ci-team-a",
        "wabaplane-ci-team-b",
    ]
    for role in operator_roles:
        assert {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"],
                "verbs": ["get", "list", "watch", "create", "patch"]} in role["rules"]  # fmt: skip
    budgets = {p["metadata"]["name"]: p["spec"] for p in by_kind(manifests, "PodDisruptionBudget")}
    assert budgets["wp-wabaplane-operator"]["maxUnavailable"] == 1
    elsewhere = render(
        "-f", str(CHART / "ci" / "ha-values.yaml"), "--set", "operator.installPeeringCrd=false"
    )
    assert "kopfpeerings.kopf.dev" not in {
        c["metadata"]["name"] for c in by_kind(elsewhere, "CustomResourceDefinition")
    }


def test_the_gateway_is_probed_and_protected() -> None:
    manifests = render("-f", str(CHART / "ci" / "ha-values.yaml"))
    deployments = {d["metadata"]["name"]: d for d in by_kind(manifests, "Deployment")}
    gateway = deployments["wp-wabaplane-gateway"]
    assert "readinessProbe" in gateway["spec"]["template"]["spec"]["containers"][0]
    args = gateway["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=wabaplane-ci-team-a" in args
    assert "--namespace=wabaplane-ci-team-b" in args
    assert "--replicas=8" in args, "each replica's fallback share assumes the most replicas the HPA allows"
    assert "replicas" not in gateway["spec"], "the HPA owns the replica count"
    budgets = {p["metadata"]["name"]: p["spec"] for p in by_kind(manifests, "PodDisruptionBudget")}
    assert budgets["wp-wabaplane-gateway"]["maxUnavailable"] == 1
    assert by_kind(manifests, "HorizontalPodAutoscaler")[0]["spec"]["maxReplicas"] == 8
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WABAPLANE_STORE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "wabaplane-postgresql",
        "key": "url",
    }
    assert env["WABAPLANE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "wabaplane-redis",
        "key": "url",
    }


def test_network_policies_expose_only_the_gateway() -> None:
    policies = {p["metadata"]["name"]: p for p in by_kind(render("-f", str(CHART / "ci" / "default-values.yaml")),
                                                          "NetworkPolicy")}  # fmt: skip
    gateway, operator = policies["wp-wabaplane-gateway"], policies["wp-wabaplane-operator"]
    assert gateway["spec"]["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 8080}]},
        {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 9090}]},
    ]
    (rule,) = operator["spec"]["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert rule["ports"] == [{"protocol": "TCP", "port": 8081}]
