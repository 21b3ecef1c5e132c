"""Everything the demo runs: a cluster, the CRDs, the emulator as Meta, the operator, the gateway, and
two tenant endpoints; then examples/ applied and waited on until every object is Ready.

Whatever the demo starts it stops, in an order that lets the operator remove its finalizers.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wabaplane.api.crds import KINDS, crd
from wabaplane.demo.kubectl import DemoError, Kubectl, find_kubectl
from wabaplane.demo.processes import ManagedProcess, answers, wabaplane_command, wait_until
from wabaplane.demo.receivers import Receivers, TenantEndpoint
from wabaplane.devcluster.build import ensure_built
from wabaplane.devcluster.cluster import LocalCluster, free_port
from wabaplane.devcluster.errors import ClusterError

Report = Callable[[str], None]
MANAGED_BY = {"app.kubernetes.io/managed-by": "wabaplane-demo"}
APP_ID = "1234567890123456"
READY_TIMEOUT = 180.0


@dataclass(frozen=True)
class Options:
    examples: Path
    namespace: str = "wabaplane-demo"
    kubeconfig: Path | None = None
    gateway_port: int | None = None
    keep_logs: bool = False
    # Use a namespace that exists (made by someone else, e.g. with RoleBindings in it) as it is.
    existing_namespace: bool = False
    # Credentials of the operator and the gateway, e.g. a ServiceAccount token from the chart's
    # roles; by default they use the demo's own kubeconfig.
    operator_kubeconfig: Path | None = None
    gateway_kubeconfig: Path | None = None


@dataclass
class Stack:
    """The running demo; `urls` and `kubectl` are what the scenario and the printed help use."""

    options: Options
    report: Report
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wabaplane-demo-")))
    kubectl: Kubectl | None = None
    local_cluster: LocalCluster | None = None
    processes: list[ManagedProcess] = field(default_factory=list)
    receivers: Receivers = field(
        default_factory=lambda: Receivers({name: TenantEndpoint(name) for name in ("acme", "globex")})
    )
    urls: dict[str, str] = field(default_factory=dict)
    created_crds: list[str] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)
    app_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    verify_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    api_keys: dict[str, str] = field(default_factory=dict)
    failed: bool = False

    @property
    def kube(self) -> Kubectl:
        assert self.kubectl is not None, "the cluster is not set up yet"
        return self.kubectl

    @property
    def namespace(self) -> str:
        return self.options.namespace

    async def start(self, exits: AsyncExitStack) -> None:
        exits.push_async_callback(self.cleanup)
        self.report(f"Logs and the gateway's store: {self.run_dir}")
        await self._cluster()
        await self._crds()
        await self._namespace()
        await self.receivers.start(free_port())
        self.urls["receivers"] = self.receivers.base_url
        await self._processes()
        await self._apply_examples()
        await self._wait_ready()

    # -- the cluster -------------------------------------------------------------------------------

    async def _cluster(self) -> None:
        binary = find_kubectl()
        candidate = self.options.kubeconfig or _kubeconfig_from_environment()
        if candidate is not None:
            kubectl = Kubectl(candidate, binary)
            if await kubectl.succeeds("get", "--raw", "/readyz", "--request-timeout=5s"):
                self.report(f"Using the cluster in {candidate}")
                self.kubectl = kubectl
                return
            if self.options.kubeconfig is not None:
                raise DemoError(f"the cluster in {candidate} does not answer (kubectl get --raw /readyz)")
            self.report(
                f"The cluster in {candidate} does not answer; starting the local control plane instead"
            )
        else:
            self.report(
                "No KUBECONFIG: starting the local control plane (etcd, kube-apiserver, controller-manager)"
            )
        local = LocalCluster(self.run_dir / "cluster", report=self.report)
        try:
            ensure_built(local.binaries, report=self.report)
            self.local_cluster = local
            kubeconfig = local.start()
        except ClusterError as error:
            raise DemoError(str(error)) from None
        self.kubectl = Kubectl(kubeconfig, binary)

    async def _crds(self) -> None:
        names = [kind.crd_name for kind in KINDS]
        present = set((await self.kube.run("get", "crd", "-o", "name", "--ignore-not-found", *names)).split())
        self.created_crds = [
            name for name in names if f"customresourcedefinition.apiextensions.k8s.io/{name}" not in present
        ]
        self.report("Installing the CRDs (server-side apply)")
        await self.kube.apply([crd(kind) for kind in KINDS], "--server-side", "--force-conflicts",
                              "--field-manager=wabaplane")  # fmt: skip
        await self.kube.run("wait", "--for=condition=Established", "--timeout=60s",
                            *[f"crd/{name}" for name in names])  # fmt: skip

    async def _namespace(self) -> None:
        existing = await self.kube.run("get", "namespace", self.namespace, "-o", "json", "--ignore-not-found")
        if self.options.existing_namespace:
            if not existing.strip():
                raise DemoError(
                    f"namespace {self.namespace} does not exist (--existing-namespace uses it as it is)"
                )
            return
        if existing.strip():
            labels = yaml.safe_load(existing)["metadata"].get("labels") or {}
            if labels.get("app.kubernetes.io/managed-by") != MANAGED_BY["app.kubernetes.io/managed-by"]:
                raise DemoError(
                    f"namespace {self.namespace} exists and was not made by the demo; pass --namespace NAME"
                )
            self.report(f"Deleting namespace {self.namespace} left by an earlier demo")
            await self.kube.run(
                "delete", "namespace", self.namespace, "--wait=true", "--timeout=120s", within=130
            )
        namespace = {"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": self.namespace, "labels": MANAGED_BY}}  # fmt: skip
        await self.kube.apply([namespace])

    # -- the processes -----------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        process = ManagedProcess(name, [wabaplane_command(), *args], self.run_dir / f"{name}.log", env or {})
        process.start()
        self.processes.append(process)
        return process

    async def _processes(self) -> None:
        emulator_port, operator_port, health_port = free_port(), free_port(), free_port()
        gateway_port = self.options.gateway_port or free_port()
        self.urls.update(
            emulator=f"http://127.0.0.1:{emulator_port}",
            gateway=f"http://127.0.0.1:{gateway_port}",
            operator=f"http://127.0.0.1:{operator_port}",
        )
        seed = self.options.examples / "emulator-seed.yaml"
        self.report("Starting the Meta emulator seeded with two businesses (two WABAs, three numbers)")
        # Secrets go through the environment, never the command line (which `ps` shows to everyone).
        emulator = self._spawn("emulator", [
            "emulator", "--port", str(emulator_port), "--seed", str(seed), "--app-id", APP_ID,
            "--callback-url", f"{self.urls['gateway']}/webhook", "--review-seconds", "1",
        ], {"WABAPLANE_EMULATOR_APP_SECRET": self.app_secret, "WABAPLANE_EMULATOR_VERIFY_TOKEN": self.verify_token})  # fmt: skip
        await wait_until(
            lambda: answers(f"{self.urls['emulator']}/_emulator/"), "the emulator", 30, [emulator]
        )

        management_token = secrets.token_urlsafe(24)
        operator_kubeconfig = str(self.options.operator_kubeconfig or self.kube.kubeconfig)
        gateway_kubeconfig = str(self.options.gateway_kubeconfig or self.kube.kubeconfig)
        self.report("Starting the operator")
        operator = self._spawn(
            "operator",
            [
                "operator",
                "--namespace",
                self.namespace,
                "--liveness",
                f"http://127.0.0.1:{health_port}/healthz",
            ],
            {
                "KUBECONFIG": operator_kubeconfig,
                "WABAPLANE_META_APP_ID": APP_ID,
                "WABAPLANE_META_APP_SECRET": self.app_secret,
                "WABAPLANE_GRAPH_URL": self.urls["emulator"],
                "WABAPLANE_MANAGEMENT_PORT": str(operator_port),
                "WABAPLANE_MANAGEMENT_TOKEN": management_token,
                "WABAPLANE_PENDING_POLL_INTERVAL": "1",
                "WABAPLANE_RETRY_DELAY": "1",
            },
        )
        self.report("Starting the gateway")
        gateway = self._spawn("gateway", [
            "gateway", "--host", "127.0.0.1", "--port", str(gateway_port),
            "--store-url", f"sqlite:///{self.run_dir / 'gateway.db'}", "--kubeconfig", gateway_kubeconfig,
            "--namespace", self.namespace, "--graph-url", self.urls["emulator"],
            "--operator-url", self.urls["operator"], "--allow-http", "--allow-cidr", "127.0.0.0/8",
        ], {
            "WABAPLANE_META_APP_SECRET": self.app_secret, "WABAPLANE_VERIFY_TOKEN": self.verify_token,
            "WABAPLANE_MANAGEMENT_TOKEN": management_token, "WABAPLANE_ADMIN_TOKEN": self.admin_token,
        })  # fmt: skip
        watched = [emulator, operator, gateway]
        await wait_until(
            lambda: answers(f"http://127.0.0.1:{health_port}/healthz"), "the operator", 60, watched
        )
        await wait_until(lambda: answers(f"{self.urls['gateway']}/readyz"), "the gateway", 60, watched)

    # -- examples/ ---------------------------------------------------------------------------------

    async def _apply_examples(self) -> None:
        objects: list[dict[str, Any]] = []
        for path in sorted(self.options.examples.glob("*.yaml")):
            objects += [document for document in yaml.safe_load_all(path.read_text()) if document]
        for obj in objects:
            if obj["kind"] == "Tenant":
                # The examples name the businesses' real endpoints; here they are the local receivers.
                obj["spec"]["webhook"]["url"] = self.receivers.url(obj["metadata"]["name"])
        self.report(
            f"Applying {self.options.examples}/ to namespace {self.namespace} with kubectl "
            "(tenant webhooks pointed at the local receivers)"
        )
        self.applied = objects
        for line in (await self.kube.apply(objects, "-n", self.namespace)).splitlines():
            self.report(f"  {line}")

    async def _wait_ready(self) -> None:
        self.report("Waiting until every Tenant, PhoneNumber and MessageTemplate is Ready")
        reported: dict[str, str] = {}

        async def all_ready() -> bool:
            listed = await self.kube.get_json("tenants,phonenumbers,messagetemplates", "-n", self.namespace)
            await self._read_tenant_secrets([item for item in listed["items"] if item["kind"] == "Tenant"])
            states = {
                f"{item['kind']}/{item['metadata']['name']}": _ready_state(item) for item in listed["items"]
            }
            for name, state in sorted(states.items()):
                if reported.get(name) != state:
                    reported[name] = state
                    self.report(f"  {name}: {state}")
            return bool(states) and all(state.startswith("Ready") for state in states.values())

        try:
            await wait_until(all_ready, "every object to be Ready", READY_TIMEOUT, self.processes, interval=1)
        except DemoError as error:
            waiting = "\n".join(
                f"  {name}: {state}" for name, state in reported.items() if not state.startswith("Ready")
            )
            raise DemoError(f"{error}; still not Ready:\n{waiting}") from None

    async def _read_tenant_secrets(self, tenants: list[dict[str, Any]]) -> None:
        """The receivers' webhook secrets and the API keys, as soon as the operator has made them."""
        for tenant in tenants:
            name, status = tenant["metadata"]["name"], tenant.get("status") or {}
            endpoint = self.receivers.endpoints.get(name)
            if endpoint is not None and not endpoint.secret and status.get("webhookSecretName"):
                endpoint.secret = await self.secret_value(status["webhookSecretName"], "secret")
            if name not in self.api_keys and status.get("apiKeySecretName"):
                self.api_keys[name] = await self.secret_value(status["apiKeySecretName"], "api-key")

    async def secret_value(self, name: str, key: str) -> str:
        secret = await self.kube.get_json("secret", name, "-n", self.namespace)
        return base64.b64decode(secret["data"][key]).decode()

    # -- cleanup -----------------------------------------------------------------------------------

    async def cleanup(self) -> None:
        """Undo everything, each step on its own so one failure does not leave the rest running."""
        self.report("Cleaning up")
        if self.kubectl is not None:
            try:
                # While the operator still runs: it removes its finalizers (and unsubscribes at Meta).
                if self.options.existing_namespace:
                    await self._delete_applied()
                else:
                    await self.kube.run("delete", "namespace", self.namespace, "--ignore-not-found", "--wait=true",
                                        "--timeout=120s", within=130)  # fmt: skip
            except DemoError as error:
                self.report(f"  could not delete what the demo made in namespace {self.namespace}: {error}")
        for process in reversed(self.processes):
            process.stop()
        await self.receivers.stop()
        if self.kubectl is not None and self.created_crds and self.local_cluster is None:
            try:
                await self.kube.run("delete", "crd", *self.created_crds, "--ignore-not-found")
            except DemoError as error:
                self.report(f"  could not delete the CRDs the demo installed: {error}")
        if self.local_cluster is not None:
            self.local_cluster.stop(delete_data=True)
        if self.failed or self.options.keep_logs:
            self.report(f"Logs kept in {self.run_dir}")
        else:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    async def _delete_applied(self) -> None:
        """Delete what the demo applied, the custom resources first (their finalizers need the Secrets)."""
        custom = [obj for obj in self.applied if obj["apiVersion"].startswith("wabaplane.io/")]
        others = [obj for obj in self.applied if obj not in custom]
        for batch in (custom, others):
            if batch:
                await self.kube.delete(batch, "-n", self.namespace, "--ignore-not-found", "--wait=true",
                                       "--timeout=120s", within=130)  # fmt: skip


def _kubeconfig_from_environment() -> Path | None:
    configured = os.environ.get("KUBECONFIG", "")
    first = next((part for part in configured.split(os.pathsep) if part), None)
    if first:
        return Path(first).expanduser()
    default = Path.home() / ".kube" / "config"
    return default if default.exists() else None


def _ready_state(item: dict[str, Any]) -> str:
    conditions = (item.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return "waiting for the operator"
    label = "Ready" if ready.get("status") == "True" else "not ready"
    return f"{label} ({ready.get('reason')}: {ready.get('message')})"
