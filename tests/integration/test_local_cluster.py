"""The local control plane: the CLI starts and stops it, and its controllers do their jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Kube, kubectl_binary, wait_for
from wabaplane.devcluster.cluster import ClusterState, process_alive

pytestmark = pytest.mark.cluster
WABAPLANE = str(Path(sys.executable).parent / "wabaplane")


def wabaplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WABAPLANE, *args], capture_output=True, text=True, timeout=180, check=False)


def test_cli_lifecycle(tmp_path: Path, kube: Kube) -> None:
    """start → status → kubeconfig → kubectl works → stop ends exactly the started processes."""
    if os.environ.get("WABAPLANE_TEST_KUBECONFIG"):
        pytest.skip("runs a second local control plane; not meaningful against an external cluster")
    state_dir = tmp_path / "cluster"
    started = wabaplane("cluster", "start", "--state-dir", str(state_dir))
    try:
        assert started.returncode == 0, started.stderr
        assert f"export KUBECONFIG={state_dir / 'kubeconfig'}" in started.stdout

        status = wabaplane("cluster", "status", "--state-dir", str(state_dir))
        assert status.returncode == 0, status.stdout
        assert "etcd: running" in status.stdout
        assert "kube-apiserver: running" in status.stdout
        assert "kube-controller-manager: running" in status.stdout

        kubeconfig = wabaplane("cluster", "kubeconfig", "--state-dir", str(state_dir)).stdout.strip()
        version = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={kubeconfig}", "version", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == "v1.37.1"
        rbac = subprocess.run(
            [
                kubectl_binary(),
                f"--kubeconfig={kubeconfig}",
                "auth",
                "can-i",
                "list",
                "secrets",
                "--as=system:serviceaccount:default:default",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert rbac.stdout.strip() == "no", "RBAC must be enforced"

        again = wabaplane("cluster", "start", "--state-dir", str(state_dir))
        assert again.returncode == 0
        assert "already running" in again.stderr
        state = ClusterState.load(state_dir / "cluster.json")
        assert state is not None
        records = list(state.processes.values())
    finally:
        stopped = wabaplane("cluster", "stop", "--state-dir", str(state_dir))
    assert stopped.returncode == 0
    assert stopped.stdout.strip() == "stopped: kube-controller-manager, kube-apiserver, etcd"
    wait_for(lambda: not any(process_alive(record) for record in records), what="the processes to exit")
    assert wabaplane("cluster", "status", "--state-dir", str(state_dir)).returncode == 1
    # The session's own cluster was not touched.
    assert kube.run("get", "namespace", "default").returncode == 0


def test_garbage_collector_removes_owned_objects(kube: Kube, namespace: str) -> None:
    kube.run("create", "configmap", "owner", "-n", namespace)
    owner_uid = kube.run(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    kube.run("apply", "-f", "-", stdin=json.dumps(dependent))
    kube.run("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: kube.run("get", "configmap", "dependent", "-n", namespace, check=False).returncode != 0,
        what="the garbage collector to delete the owned ConfigMap",
    )


def test_namespace_deletion_completes_and_service_accounts_appear(kube: Kube) -> None:
    kube.run("create", "namespace", "wp-lifecycle-check")
    wait_for(
        lambda: (
            kube.run("get", "serviceaccount", "default", "-n", "wp-lifecycle-check", check=False).returncode
            == 0
        ),
        what="the default ServiceAccount",
    )
    kube.run("delete", "namespace", "wp-lifecycle-check", "--wait=false")
    wait_for(
        lambda: kube.run("get", "namespace", "wp-lifecycle-check", check=False).returncode != 0,
        timeout=60,
        what="the namespace to finish deleting",
    )
