"""Several operator replicas: one works, the others wait, and one takes over when it stops."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import Kube, wait_for
from tests.operator.conftest import (
    ACME_SUPPORT,
    ACME_TOKEN,
    Emulator,
    apply,
    onboard_acme,
    phone,
    wait_condition,
)
from tests.operator.replicas import (
    Replica,
    install_peering_crd,
    operator_command,
    operator_env,
    peers,
    replica,
)

PEERING = "wabaplane"


@contextmanager
def running(
    kube: Kube, namespace: str, emulator: Emulator, tmp_path: Path, name: str, *args: str
) -> Iterator[Replica]:
    with replica(kube.kubeconfig, namespace, emulator.url, tmp_path, name, PEERING, *args) as started:
        yield started


def test_two_replicas_one_works_and_the_other_takes_over_when_it_stops(
    kube: Kube, namespace: str, emulator: Emulator, tmp_path: Path
) -> None:
    install_peering_crd(kube)
    with running(kube, namespace, emulator, tmp_path, "first") as first:
        # The replica created the KopfPeering object itself, before it watched anything.
        wait_for(lambda: "first" in peers(kube, namespace, PEERING), what="the first replica in the peering")
        onboard_acme(kube, namespace)
        assert first.reconciles() > 0
        with running(kube, namespace, emulator, tmp_path, "second") as second:
            wait_for(
                lambda: set(peers(kube, namespace, PEERING)) == {"first", "second"},
                what="both replicas peered",
            )
            listed = peers(kube, namespace, PEERING)
            assert listed["first"]["priority"] > listed["second"]["priority"], "the older replica ranks first"  # type: ignore[operator]
            # A working replica resumes every existing object when it starts; the waiting one has not.
            assert second.reconciles() == 0, "the waiting replica must not reconcile anything"

            first.process.send_signal(signal.SIGTERM)
            assert first.process.wait(timeout=30) == 0, first.log.read_text()
            wait_for(
                lambda: set(peers(kube, namespace, PEERING)) == {"second"}, what="the stopped replica leaving"
            )
            wait_for(lambda: second.reconciles() > 0, what="the second replica resuming the Tenant")
            apply(kube, namespace, phone("support", ACME_SUPPORT))
            wait_condition(kube, namespace, "phonenumber", "support", "Ready", "True")
    assert ACME_TOKEN not in first.log.read_text() + second.log.read_text()


def test_a_crashed_replica_is_replaced_once_its_peering_record_expires(
    kube: Kube, namespace: str, emulator: Emulator, tmp_path: Path
) -> None:
    install_peering_crd(kube)
    lifetime = ("--peering-lifetime", "10")
    with running(kube, namespace, emulator, tmp_path, "first", *lifetime) as first:
        wait_for(lambda: "first" in peers(kube, namespace, PEERING), what="the first replica in the peering")
        with running(kube, namespace, emulator, tmp_path, "second", *lifetime) as second:
            wait_for(lambda: set(peers(kube, namespace, PEERING)) == {"first", "second"}, what="both peered")
            first.process.kill()  # no clean stop: its record stays until it expires
            first.process.wait(timeout=30)
            assert "first" in peers(kube, namespace, PEERING)
            onboard_acme(kube, namespace)  # Ready within 30 s: the record expires after 10
            assert second.reconciles() > 0
            wait_for(
                lambda: set(peers(kube, namespace, PEERING)) == {"second"}, what="the dead record cleaned"
            )


def test_peering_without_kopfs_crd_stops_with_what_to_install(kube: Kube, emulator: Emulator) -> None:
    # Cluster-wide peering uses ClusterKopfPeering, whose CRD nothing here installs.
    env = operator_env(kube.kubeconfig, emulator.url)
    command = operator_command("--all-namespaces", "--peering", PEERING)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "clusterkopfpeerings.kopf.dev" in result.stdout + result.stderr
    assert "charts/wabaplane/files/kopfpeerings.yaml" in result.stdout + result.stderr
