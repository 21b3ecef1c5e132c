"""Several operator replicas: one works, the others wait, and one takes over when it stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO, Kube, free_port, wait_for
from tests.operator.conftest import (
    ACME_SUPPORT,
    ACME_TOKEN,
    OPERATOR_ENV,
    Emulator,
    apply,
    onboard_acme,
    phone,
    wait_condition,
)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

PEERING_CRD = REPO / "charts" / "wabaplane" / "files" / "kopfpeerings.yaml"
PEERING = "wabaplane"
MANAGEMENT_TOKEN = "peering-test-management-token"


@dataclass
class Replica:
    process: subprocess.Popen[str]
    management_url: str
    log: Path

    def reconciles(self) -> float:
        """Reconciles this replica finished, read from its own /metrics."""
        text = httpx.get(f"{self.management_url}/metrics", timeout=5).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "wabaplane_operator_reconciles"
            for sample in family.samples
            if sample.name == "wabaplane_operator_reconciles_total"
        )

    def answers(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.management_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


@contextmanager
def replica(kube: Kube, namespace: str, emulator: Emulator, tmp_path: Path, name: str) -> Iterator[Replica]:
    """`wabaplane operator --peering` as its own process, as a Deployment's replica would run."""
    port = free_port()
    env = {**os.environ, **OPERATOR_ENV, "WABAPLANE_GRAPH_URL": emulator.url, "KUBECONFIG": str(kube.kubeconfig),
           "WABAPLANE_MANAGEMENT_TOKEN": MANAGEMENT_TOKEN, "WABAPLANE_MANAGEMENT_PORT": str(port), "POD_ID": name}  # fmt: skip
    log = tmp_path / f"{name}.log"
    command = [str(Path(sys.executable).parent / "wabaplane"), "operator", "--namespace", namespace,
               "--peering", PEERING, "--liveness", f"http://127.0.0.1:{free_port()}/healthz"]  # fmt: skip
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    running = Replica(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_for(running.answers, timeout=30, interval=0.2, what=f"operator replica {name} to start")
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def peers(kube: Kube, namespace: str) -> dict[str, dict[str, object]]:
    found = json.loads(kube.run("get", "kopfpeering", "-n", namespace, PEERING, "-o", "json").stdout)
    return dict(found.get("status") or {})


@pytest.fixture
def peering(kube: Kube, namespace: str) -> None:
    kube.run("apply", "--server-side", "-f", str(PEERING_CRD))
    kube.run("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=30s")
    apply(
        kube, namespace, {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}}
    )


def test_two_replicas_one_works_and_the_other_takes_over_when_it_stops(
    kube: Kube, namespace: str, emulator: Emulator, tmp_path: Path, peering: None
) -> None:
    with replica(kube, namespace, emulator, tmp_path, "first") as first:
        # The replica created the KopfPeering object itself, before it watched anything.
        wait_for(lambda: "first" in peers(kube, namespace), what="the first replica in the peering")
        onboard_acme(kube, namespace)
        assert first.reconciles() > 0
        with replica(kube, namespace, emulator, tmp_path, "second") as second:
            wait_for(lambda: set(peers(kube, namespace)) == {"first", "second"}, what="both replicas peered")
            listed = peers(kube, namespace)
            assert listed["first"]["priority"] > listed["second"]["priority"], "the older replica ranks first"  # type: ignore[operator]
            # A working replica resumes every existing object when it starts; the waiting one has not.
            assert second.reconciles() == 0, "the waiting replica must not reconcile anything"

            first.process.send_signal(signal.SIGTERM)
            assert first.process.wait(timeout=30) == 0, first.log.read_text()
            wait_for(lambda: set(peers(kube, namespace)) == {"second"}, what="the stopped replica leaving")
            wait_for(lambda: second.reconciles() > 0, what="the second replica resuming the Tenant")
            apply(kube, namespace, phone("support", ACME_SUPPORT))
            wait_condition(kube, namespace, "phonenumber", "support", "Ready", "True")
    assert ACME_TOKEN not in first.log.read_text() + second.log.read_text()


def test_peering_without_kopfs_crd_stops_with_what_to_install(kube: Kube, emulator: Emulator) -> None:
    # Cluster-wide peering uses ClusterKopfPeering, whose CRD nothing here installs.
    env = {
        **os.environ,
        **OPERATOR_ENV,
        "WABAPLANE_GRAPH_URL": emulator.url,
        "KUBECONFIG": str(kube.kubeconfig),
    }
    command = [str(Path(sys.executable).parent / "wabaplane"), "operator", "--all-namespaces", "--peering", PEERING,
               "--liveness", f"http://127.0.0.1:{free_port()}/healthz"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "clusterkopfpeerings.kopf.dev" in result.stdout + result.stderr
    assert "charts/wabaplane/files/kopfpeerings.yaml" in result.stdout + result.stderr
