"""`wabaplane dev --once` (what `make demo ARGS=--once` runs) plays its scenario against the real API server.

It proves the operator, the gateway and the emulator work together as the README says: every step of
the table passes, and the demo removes what it created.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES_DIR, REPO, Kube

pytestmark = pytest.mark.cluster
STEPS = 6


def test_the_demo_scenario_passes_and_cleans_up(kube: Kube) -> None:
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "wabaplane"), "dev", "--once", "--kubeconfig", str(kube.kubeconfig),
         "--namespace", namespace, "--examples", str(EXAMPLES_DIR)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    rows = [
        line for line in result.stdout.splitlines() if line.startswith("| ") and line.rstrip().endswith("|")
    ]
    results = [row.rsplit("|", 2)[-2].strip() for row in rows]
    assert results.count("PASS") == STEPS, output[-6000:]
    assert "FAIL" not in results
    assert "Every step passed." in result.stdout
    # Everything the demo made is gone; the CRDs it found installed stay.
    assert kube.run("get", "namespace", namespace, "--ignore-not-found", "-o", "name").stdout.strip() == ""
    assert "tenants.wabaplane.io" in kube.run("get", "crd", "-o", "name").stdout
    run_dir = next(
        line for line in result.stdout.splitlines() if line.startswith("Logs and the gateway's store:")
    )
    assert not Path(run_dir.split(": ", 1)[1]).exists()


def test_a_cluster_that_does_not_answer_is_refused_clearly(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "wabaplane"), "dev", "--once", "--kubeconfig", str(kubeconfig),
         "--examples", str(EXAMPLES_DIR)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"the cluster in {kubeconfig} does not answer" in result.stdout
