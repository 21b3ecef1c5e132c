"""Operator replicas as separate processes, peering as a Deployment's pods would."""

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
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO, Kube, free_port, wait_for
from tests.operator.conftest import OPERATOR_ENV

PEERING_CRD = REPO / "charts" / "wabaplane" / "files" / "kopfpeerings.yaml"
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


def operator_env(kubeconfig: Path, graph_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **OPERATOR_ENV,
        "WABAPLANE_GRAPH_URL": graph_url,
        "KUBECONFIG": str(kubeconfig),
        **extra,
    }


def operator_command(*args: str) -> list[str]:
    """`wabaplane operator ARGS` with its liveness endpoint on a free loopback port."""
    return [str(Path(sys.executable).parent / "wabaplane"), "operator", *args,
            "--liveness", f"http://127.0.0.1:{free_port()}/healthz"]  # fmt: skip


@contextmanager
def replica(kubeconfig: Path, namespace: str, graph_url: str, log_dir: Path, name: str, peering: str,
            *args: str) -> Iterator[Replica]:  # fmt: skip
    """`wabaplane operator --peering` as its own process, as a Deployment's replica would run."""
    port = free_port()
    env = operator_env(kubeconfig, graph_url, WABAPLANE_MANAGEMENT_TOKEN=MANAGEMENT_TOKEN,
                       WABAPLANE_MANAGEMENT_PORT=str(port), POD_ID=name)  # fmt: skip
    log = log_dir / f"{name}.log"
    command = operator_command("--namespace", namespace, "--peering", peering, *args)
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


def peers(kube: Kube, namespace: str, peering: str) -> dict[str, dict[str, object]]:
    """The replicas kopf lists in the peering object, by identity."""
    found = json.loads(kube.run("get", "kopfpeering", "-n", namespace, peering, "-o", "json").stdout)
    return dict(found.get("status") or {})


def install_peering_crd(kube: Kube) -> None:
    kube.run("apply", "--server-side", "-f", str(PEERING_CRD))
    kube.run("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=30s")
