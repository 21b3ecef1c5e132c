"""Run a real etcd + kube-apiserver + kube-controller-manager on loopback, without Docker.

`LocalCluster.start` picks free ports (or checks the one asked for), starts the three processes
in their own sessions so they outlive the command that started them, waits until the API server
is ready, and records what it started in `cluster.json`; `stop` ends exactly those processes
(it checks each pid still runs the binary it started before signalling it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import yaml

from wabaplane.devcluster import pki as pki_module
from wabaplane.devcluster.errors import ClusterError
from wabaplane.devcluster.paths import Binaries, default_state_dir

Report = Callable[[str], None]
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
LOG_TAIL_LINES = 30
CONTEXT_NAME = "wabaplane-local"
# The controllers the operator and the tests rely on: namespace cleanup, garbage collection of
# owned Secrets, the default ServiceAccount with its tokens, the kube-root-ca.crt ConfigMap, and
# Deployments making ReplicaSets making Pods (which admission, e.g. Pod Security, then judges; with
# no scheduler or kubelet they stay Pending).
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)


@dataclass
class ProcessRecord:
    pid: int
    binary: str
    log: str


@dataclass
class ClusterState:
    apiserver_port: int
    etcd_port: int
    etcd_peer_port: int
    controller_manager_port: int
    kubeconfig: str
    processes: dict[str, ProcessRecord]

    @classmethod
    def load(cls, path: Path) -> ClusterState | None:
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        raw["processes"] = {name: ProcessRecord(**record) for name, record in raw["processes"].items()}
        return cls(**raw)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def process_alive(record: ProcessRecord) -> bool:
    """True when the pid still runs the binary we started (a recycled pid is not ours)."""
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmdline.split(b"\0", 1)[0].decode(errors="replace") == record.binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            raise ClusterError(
                f"port {port} on 127.0.0.1 (asked for {what}) is in use by another process "
                f"({error.strerror}); choose another port, or omit it to pick a free one"
            ) from None


class LocalCluster:
    """The local control plane whose state lives in one directory."""

    def __init__(
        self, state_dir: Path | None = None, binaries: Binaries | None = None, report: Report = print
    ) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.binaries = binaries or Binaries.cached()
        self.report = report
        self.pki = pki_module.Pki(self.state_dir / "pki")
        # Processes this object started, so that stopping them also reaps them.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def state_file(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    def state(self) -> ClusterState | None:
        return ClusterState.load(self.state_file)

    def status(self) -> dict[str, bool]:
        """Each component started by this directory's cluster, and whether it still runs."""
        state = self.state()
        if state is None:
            return {}
        return {name: process_alive(record) for name, record in state.processes.items()}

    def running(self) -> bool:
        status = self.status()
        return bool(status) and all(status.values())

    def start(self, apiserver_port: int | None = None) -> Path:
        """Start the control plane (or find it running) and return the kubeconfig path."""
        if self.running():
            self.report(f"The local control plane is already running; kubeconfig: {self.kubeconfig_path}")
            return self.kubeconfig_path
        if self.status():
            self.report("Cleaning up a local control plane that is partly stopped ...")
            self.stop()
        missing = self.binaries.missing()
        if missing:
            raise ClusterError(
                "control-plane binaries are missing: "
                + ", ".join(str(path) for path in missing)
                + ". Build them with `wabaplane cluster build` (or `make cluster-binaries`)."
            )
        if apiserver_port is not None:
            check_port_free(apiserver_port, "the API server")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = pki_module.create(self.pki.directory)
        state = ClusterState(
            apiserver_port=apiserver_port or free_port(),
            etcd_port=free_port(),
            etcd_peer_port=free_port(),
            controller_manager_port=free_port(),
            kubeconfig=str(self.kubeconfig_path),
            processes={},
        )
        started: dict[str, subprocess.Popen[bytes]] = {}
        try:
            started["etcd"] = self._spawn("etcd", self.binaries.etcd, self._etcd_args(state), state)
            self._wait("etcd", started["etcd"], state, lambda: self._etcd_healthy(state))
            started["kube-apiserver"] = self._spawn(
                "kube-apiserver", self.binaries.kube_apiserver, self._apiserver_args(state, pki), state
            )
            self._wait(
                "kube-apiserver", started["kube-apiserver"], state, lambda: self._apiserver_ready(state)
            )
            write_kubeconfig(self.kubeconfig_path, state.apiserver_port, pki)
            started["kube-controller-manager"] = self._spawn(
                "kube-controller-manager",
                self.binaries.kube_controller_manager,
                self._controller_manager_args(state, pki),
                state,
            )
            self._wait(
                "kube-controller-manager",
                started["kube-controller-manager"],
                state,
                lambda: self._controller_manager_healthy(state),
            )
        except BaseException:
            self.stop()
            raise
        self.report(f"The local control plane is ready at https://127.0.0.1:{state.apiserver_port}")
        return self.kubeconfig_path

    def stop(self, delete_data: bool = False) -> list[str]:
        """End exactly the processes this cluster started, newest first; return their names."""
        state = self.state()
        stopped: list[str] = []
        if state is not None:
            for name, record in reversed(list(state.processes.items())):
                if process_alive(record):
                    _terminate(record)
                    stopped.append(name)
                child = self._children.pop(record.pid, None)
                if child is not None:
                    child.wait()
            self.state_file.unlink(missing_ok=True)
        if delete_data:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        return stopped

    # -- processes ---------------------------------------------------------------------------

    def _spawn(
        self, name: str, binary: Path, args: list[str], state: ClusterState
    ) -> subprocess.Popen[bytes]:
        log_path = self.state_dir / f"{name}.log"
        self.report(f"Starting {name} (log: {log_path}) ...")
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[process.pid] = process
        state.processes[name] = ProcessRecord(pid=process.pid, binary=str(binary), log=str(log_path))
        state.save(self.state_file)
        return process

    def _wait(
        self, name: str, process: subprocess.Popen[bytes], state: ClusterState, ready: Callable[[], bool]
    ) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ClusterError(
                    f"{name} exited with code {process.returncode} while starting. "
                    f"Last lines of {state.processes[name].log}:\n{_tail(Path(state.processes[name].log))}"
                )
            if ready():
                return
            time.sleep(0.25)
        raise ClusterError(
            f"{name} did not become ready within {READY_TIMEOUT_SECONDS:.0f}s. "
            f"Last lines of {state.processes[name].log}:\n{_tail(Path(state.processes[name].log))}"
        )

    def _etcd_args(self, state: ClusterState) -> list[str]:
        client = f"http://127.0.0.1:{state.etcd_port}"
        peer = f"http://127.0.0.1:{state.etcd_peer_port}"
        return [
            "--name=wabaplane",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=wabaplane={peer}",
            # A throw-away development store: durability is not worth the fsync latency here.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_args(self, state: ClusterState, pki: pki_module.Pki) -> list[str]:
        return [
            f"--etcd-servers=http://127.0.0.1:{state.etcd_port}",
            f"--cert-dir={pki.directory}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--secure-port={state.apiserver_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The kubernetes Service cannot point at a loopback address; nothing here needs it.
            "--endpoint-reconciler-type=none",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--service-account-issuer=https://127.0.0.1:{state.apiserver_port}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_private_key}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--v=1",
        ]

    def _controller_manager_args(self, state: ClusterState, pki: pki_module.Pki) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig_path}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={state.controller_manager_port}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            f"--root-ca-file={pki.ca_cert}",
            f"--service-account-private-key-file={pki.service_account_private_key}",
            "--use-service-account-credentials=false",
            f"--controllers={','.join(CONTROLLERS)}",
            "--v=1",
        ]

    # -- readiness ---------------------------------------------------------------------------

    def _etcd_healthy(self, state: ClusterState) -> bool:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = httpx.get(f"http://127.0.0.1:{state.etcd_port}/health", timeout=2.0)
            return response.status_code == 200 and response.json().get("health") == "true"
        return False

    def _admin_client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return httpx.Client(verify=context, timeout=2.0)

    def _apiserver_ready(self, state: ClusterState) -> bool:
        base = f"https://127.0.0.1:{state.apiserver_port}"
        with contextlib.suppress(httpx.HTTPError), self._admin_client() as client:
            if client.get(f"{base}/readyz").status_code != 200:
                return False
            return all(
                client.get(f"{base}/api/v1/namespaces/{namespace}").status_code == 200
                for namespace in ("default", "kube-system")
            )
        return False

    def _controller_manager_healthy(self, state: ClusterState) -> bool:
        # Its serving certificate is self-signed and generated at start; only liveness matters here.
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(
                f"https://127.0.0.1:{state.controller_manager_port}/healthz",
                verify=False,  # noqa: S501
                timeout=2.0,
            )
            return response.status_code == 200
        return False


def write_kubeconfig(path: Path, apiserver_port: int, pki: pki_module.Pki) -> None:
    def encoded(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT_NAME,
                "cluster": {
                    "server": f"https://127.0.0.1:{apiserver_port}",
                    "certificate-authority-data": encoded(pki.ca_cert),
                },
            }
        ],
        "users": [
            {
                "name": f"{CONTEXT_NAME}-admin",
                "user": {
                    "client-certificate-data": encoded(pki.admin_cert),
                    "client-key-data": encoded(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {
                "name": CONTEXT_NAME,
                "context": {"cluster": CONTEXT_NAME, "user": f"{CONTEXT_NAME}-admin", "namespace": "default"},
            }
        ],
        "current-context": CONTEXT_NAME,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _terminate(record: ProcessRecord) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process_alive(record):
        _reap(record.pid)
        time.sleep(0.1)
    if process_alive(record):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
    _reap(record.pid)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:])
