"""The `wabaplane` command."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import click
from aiohttp import web

from wabaplane.api import crds as crd_module
from wabaplane.api import reference as crd_reference
from wabaplane.devcluster.build import ensure_built
from wabaplane.devcluster.cluster import LocalCluster
from wabaplane.devcluster.errors import ClusterError
from wabaplane.devcluster.paths import default_state_dir
from wabaplane.emulator.app import create_app as create_emulator_app
from wabaplane.emulator.config import EmulatorSettings
from wabaplane.emulator.graph import EMULATOR_KEY
from wabaplane.emulator.seed import load_file as load_seed


@click.group()
def main() -> None:
    """wabaplane: run the WhatsApp Business Platform for many client businesses from Kubernetes."""


@main.command()
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per CRD into this directory instead of printing them.",
)
@click.option("--reference", is_flag=True, help="Print the CRD reference in Markdown instead.")
@click.option(
    "--update-readme",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Replace the CRD reference between the markers in this README.",
)
def crds(output_dir: Path | None, reference: bool, update_readme: Path | None) -> None:
    """Print the CustomResourceDefinitions generated from the API models."""
    if reference:
        click.echo(crd_reference.render_reference(), nl=False)
        return
    if update_readme is not None:
        update_readme.write_text(crd_reference.replace_in(update_readme.read_text()))
        click.echo(f"updated {update_readme}")
        return
    if output_dir is None:
        click.echo(crd_module.render_all(), nl=False)
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    for kind in crd_module.KINDS:
        target = output_dir / crd_module.file_name(kind)
        target.write_text(crd_module.render(kind))
        click.echo(f"wrote {target}")


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Where the cluster keeps certificates, data, logs and its kubeconfig [default: {default_state_dir()}; "
    "env WABAPLANE_CLUSTER_DIR].",
)


def _report(message: str) -> None:
    click.echo(message, err=True)


@main.group()
def cluster() -> None:
    """A real local control plane (etcd, kube-apiserver, kube-controller-manager) without Docker."""


@cluster.command()
def build() -> None:
    """Build the control-plane binaries once (cached outside the repository)."""
    try:
        binaries = ensure_built(report=_report)
    except ClusterError as error:
        raise click.ClickException(str(error)) from None
    for path in binaries.all():
        click.echo(path)


@cluster.command()
@state_dir_option
@click.option("--port", type=int, default=None, help="API server port on 127.0.0.1 [default: a free port].")
def start(state_dir: Path | None, port: int | None) -> None:
    """Build if needed, start the control plane on loopback and print how to use it."""
    local = LocalCluster(state_dir, report=_report)
    try:
        ensure_built(local.binaries, report=_report)
        kubeconfig = local.start(apiserver_port=port)
    except ClusterError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"\nUse it with:\n  export KUBECONFIG={kubeconfig}\n  kubectl get namespaces\n"
        f"  kubectl apply -f crds/ && kubectl apply -f examples/\n"
        f"Stop it with:\n  wabaplane cluster stop{_state_dir_flag(state_dir)}"
    )


@cluster.command()
@state_dir_option
@click.option("--delete-data", is_flag=True, help="Also delete certificates, etcd data and logs.")
def stop(state_dir: Path | None, delete_data: bool) -> None:
    """Stop exactly the processes `cluster start` started."""
    stopped = LocalCluster(state_dir, report=_report).stop(delete_data=delete_data)
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@cluster.command()
@state_dir_option
def status(state_dir: Path | None) -> None:
    """Show whether each component runs; exit 1 unless all do."""
    local = LocalCluster(state_dir, report=_report)
    components = local.status()
    if not components:
        click.echo("not running")
        sys.exit(1)
    for name, alive in components.items():
        click.echo(f"{name}: {'running' if alive else 'stopped'}")
    state = local.state()
    if state is not None:
        click.echo(f"api server: https://127.0.0.1:{state.apiserver_port}\nkubeconfig: {state.kubeconfig}")
    sys.exit(0 if all(components.values()) else 1)


@cluster.command()
@state_dir_option
def kubeconfig(state_dir: Path | None) -> None:
    """Print the path of the running cluster's kubeconfig (for `export KUBECONFIG=$(...)`)."""
    local = LocalCluster(state_dir, report=_report)
    if not local.running():
        raise click.ClickException(
            "the local control plane is not running; start it with `wabaplane cluster start`"
        )
    click.echo(local.kubeconfig_path)


def _state_dir_flag(state_dir: Path | None) -> str:
    return f" --state-dir {state_dir}" if state_dir else ""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8990, show_default=True, type=int, help="Port to listen on.")
@click.option("--app-id", default=EmulatorSettings().app_id, show_default=True, help="The Meta app's id.")
@click.option("--app-secret", envvar="WABAPLANE_EMULATOR_APP_SECRET", default=EmulatorSettings().app_secret,
              show_default=True, help="Signs webhooks. Env: WABAPLANE_EMULATOR_APP_SECRET.")  # fmt: skip
@click.option("--verify-token", envvar="WABAPLANE_EMULATOR_VERIFY_TOKEN", default=EmulatorSettings().verify_token,
              show_default=True, help="For handshakes. Env: WABAPLANE_EMULATOR_VERIFY_TOKEN.")  # fmt: skip
@click.option(
    "--callback-url", default=None, help="The app's webhook callback URL (e.g. the gateway's /webhook)."
)
@click.option(
    "--seed",
    "seed_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="YAML seed: businesses, WABAs, numbers, tokens, signup codes.",
)
@click.option("--review-seconds", default=EmulatorSettings().template_review_seconds, show_default=True, type=float,
              help="Delay before the automatic template review.")  # fmt: skip
def emulator(
    host: str,
    port: int,
    app_id: str,
    app_secret: str,
    verify_token: str,
    callback_url: str | None,
    seed_file: Path | None,
    review_seconds: float,
) -> None:
    """Run the Meta Graph API and webhook emulator (control API under /_emulator/)."""
    settings = EmulatorSettings(
        app_id=app_id,
        app_secret=app_secret,
        verify_token=verify_token,
        callback_url=callback_url,
        template_review_seconds=review_seconds,
    )
    try:
        seed = load_seed(seed_file) if seed_file else None
    except (ValueError, OSError) as error:
        raise click.ClickException(f"invalid seed file {seed_file}: {error}") from None
    app = create_emulator_app(settings, seed)
    for code in app[EMULATOR_KEY].world.codes:
        click.echo(f"Embedded Signup code from the seed: {code}", err=True)
    click.echo(
        f"Meta emulator on http://{host}:{port} (Graph paths /v25.0/..., control API /_emulator/)", err=True
    )
    web.run_app(app, host=host, port=port, print=None)


@main.command()
@click.option(
    "--namespace", "-n", "namespaces", multiple=True, help="Watch only these namespaces (repeatable)."
)
@click.option(
    "--all-namespaces", "-A", is_flag=True, help="Watch every namespace (the default with no --namespace)."
)
@click.option(
    "--peering",
    default=None,
    help="Run as one of several replicas, coordinated through the KopfPeering object of this name in "
    "each watched namespace (created if missing; kopf's CRD must be installed, as the chart does with "
    "operator.replicas > 1): one replica works, the others wait. Without it the operator runs "
    "standalone, so run exactly one replica.",
)
@click.option(
    "--priority",
    type=int,
    default=None,
    envvar="WABAPLANE_OPERATOR_PRIORITY",
    help="Peering priority: the live replica with the highest works. Default: older replicas first, "
    "so a new replica waits and a rolling update hands over when the old one stops.",
)
@click.option(
    "--peering-lifetime",
    type=click.IntRange(10, 3600),
    default=60,
    envvar="WABAPLANE_PEERING_LIFETIME",
    show_default=True,
    help="Seconds a replica's record in the peering stays valid without renewal: after a crash, the "
    "next replica works once this has passed (a clean stop hands over at once).",
)
@click.option(
    "--liveness", default="http://0.0.0.0:8080/healthz", show_default=True, help="Liveness endpoint."
)
@click.option("--verbose", is_flag=True, help="Debug logging.")
def operator(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    peering: str | None,
    priority: int | None,
    peering_lifetime: int,
    liveness: str,
    verbose: bool,
) -> None:
    """Run the operator (kopf). The Meta app comes from WABAPLANE_META_APP_ID / _SECRET and friends."""
    if priority is not None and peering is None:
        raise click.UsageError("--priority only matters with --peering: a standalone operator has no peers")
    import kopf

    import wabaplane.operator.handlers  # noqa: F401 - registers the handlers
    from wabaplane.operator.settings import OperatorSettings

    try:
        OperatorSettings.from_environment()
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    os.environ["WABAPLANE_NAMESPACES"] = ",".join(namespaces)
    os.environ["WABAPLANE_PEERING_LIFETIME"] = str(peering_lifetime)
    kopf.configure(verbose=verbose)
    kopf.run(
        standalone=peering is None,
        peering_name=peering,
        priority=(priority if priority is not None else seniority()) if peering else None,
        namespaces=list(namespaces),
        clusterwide=all_namespaces or not namespaces,
        liveness_endpoint=liveness,
    )


def seniority() -> int:
    """A peering priority that ranks replicas by start time, oldest highest.

    kopf freezes every replica when two share a priority, so the start time is taken to the
    microsecond; kopf stores priorities as JSON integers, which Kubernetes keeps as int64.
    """
    return -(time.time_ns() // 1000)


def _durations(_: click.Context, __: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    from wabaplane.gateway.settings import parse_duration

    if value is None:
        return None
    try:
        return tuple(parse_duration(part) for part in value.split(",") if part.strip())
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")  # noqa: S104
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--store-url", envvar="WABAPLANE_STORE_URL", default="sqlite:///wabaplane-gateway.db",
              show_default=True, help="sqlite:///path (one replica) or postgresql://... (several replicas).")  # fmt: skip
@click.option("--app-secret", "app_secrets", envvar="WABAPLANE_META_APP_SECRET", multiple=True,
              help="Meta app secret that signs webhooks; give it twice (current, previous) during a rotation. "
              "Env: WABAPLANE_META_APP_SECRET (space-separated).")  # fmt: skip
@click.option("--verify-token", envvar="WABAPLANE_VERIFY_TOKEN", default=None,
              help="Token of Meta's verification handshake. Env: WABAPLANE_VERIFY_TOKEN.")  # fmt: skip
@click.option("--operator-url", envvar="WABAPLANE_OPERATOR_URL", default=None,
              help="The operator's management endpoint base URL; management events go there.")  # fmt: skip
@click.option("--management-token", envvar="WABAPLANE_MANAGEMENT_TOKEN", default=None,
              help="Bearer token of the operator's management endpoint. Env: WABAPLANE_MANAGEMENT_TOKEN.")  # fmt: skip
@click.option("--admin-token", envvar="WABAPLANE_ADMIN_TOKEN", default=None,
              help="Bearer token of the platform's admin API (unroutable events). Env: WABAPLANE_ADMIN_TOKEN.")  # fmt: skip
@click.option(
    "--kubeconfig", envvar="KUBECONFIG", default=None, help="Kubeconfig; in-cluster config without it."
)
@click.option("--metrics-port", envvar="WABAPLANE_METRICS_PORT", type=int, default=None,
              help="Serve /metrics on this port only, off the public port [default: /metrics on --port].")  # fmt: skip
@click.option("--redis-url", envvar="WABAPLANE_REDIS_URL", default=None,
              help="Redis shared by the replicas for send limits (redis://host:6379/0).")  # fmt: skip
@click.option("--replicas", envvar="WABAPLANE_REPLICAS", default=1, show_default=True, type=int,
              help="How many gateway replicas run: each one's share of a limit when Redis is unset or down.")  # fmt: skip
@click.option("--graph-url", envvar="WABAPLANE_GRAPH_URL", default="https://graph.facebook.com", show_default=True,
              help="Meta's Graph API base URL (the emulator's URL in development).")  # fmt: skip
@click.option(
    "--namespace", "-n", "namespaces", multiple=True, help="Watch only these namespaces (repeatable)."
)
@click.option("--allow-cidr", "allowed_cidrs", multiple=True,
              help="Let deliveries reach this otherwise refused range (private, loopback...). Repeatable.")  # fmt: skip
@click.option("--allow-http", is_flag=True, help="Allow http:// tenant URLs (development only).")
@click.option("--retry-schedule", callback=_durations, default=None,
              help="Comma-separated delays between delivery attempts, e.g. 5s,5m,30m,2h [default: about 3 days].")  # fmt: skip
@click.option("--max-in-flight-requests", default=256, show_default=True, type=int,
              help="Concurrent webhook POSTs before answering 503 with Retry-After.")  # fmt: skip
@click.option("--verbose", is_flag=True, help="Debug logging.")
def gateway(
    host: str,
    port: int,
    store_url: str,
    app_secrets: tuple[str, ...],
    verify_token: str | None,
    operator_url: str | None,
    management_token: str | None,
    admin_token: str | None,
    kubeconfig: str | None,
    redis_url: str | None,
    replicas: int,
    graph_url: str,
    namespaces: tuple[str, ...],
    allowed_cidrs: tuple[str, ...],
    allow_http: bool,
    retry_schedule: tuple[float, ...] | None,
    max_in_flight_requests: int,
    metrics_port: int | None,
    verbose: bool,
) -> None:
    """Run the gateway: Meta's webhook for every tenant, delivery to tenants, the tenant API."""
    from pydantic import SecretStr, ValidationError

    from wabaplane.gateway import logs
    from wabaplane.gateway.app import create_app as create_gateway_app
    from wabaplane.gateway.settings import GatewaySettings
    from wabaplane.store import StoreConfigError, driver_url

    secrets = [part for value in app_secrets for part in value.split()]
    if not secrets:
        raise click.ClickException("give the Meta app secret with --app-secret or WABAPLANE_META_APP_SECRET")
    try:
        driver_url(store_url)
        settings = GatewaySettings(
            store_url=store_url,
            app_secrets=[SecretStr(s) for s in secrets],
            verify_token=SecretStr(verify_token) if verify_token else None,
            operator_url=operator_url,
            management_token=SecretStr(management_token) if management_token else None,
            admin_token=SecretStr(admin_token) if admin_token else None,
            kubeconfig=kubeconfig,
            graph_url=graph_url,
            redis_url=redis_url,
            replicas=replicas,
            namespaces=namespaces,
            allowed_cidrs=allowed_cidrs,
            allow_http=allow_http,
            max_in_flight_requests=max_in_flight_requests,
            metrics_port=metrics_port,
            **({"retry_schedule": retry_schedule} if retry_schedule is not None else {}),
        )
        from wabaplane.gateway.ssrf import EgressPolicy

        EgressPolicy.from_strings(allowed_cidrs, allow_http)
    except (ValidationError, StoreConfigError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    logs.configure(verbose)
    click.echo(
        f"wabaplane gateway on http://{host}:{port} (Meta webhook /webhook, tenant API /v1/)", err=True
    )
    web.run_app(create_gateway_app(settings), host=host, port=port, print=None, access_log=None,
                shutdown_timeout=10, loop=_fast_loop())  # fmt: skip


def _fast_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): the gateway's ingest rate is bound by the loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@main.command()
@click.option(
    "--once", is_flag=True, help="Play the scenario, print the table and exit: 0 when every step passed."
)
@click.option("--namespace", default="wabaplane-demo", show_default=True, help="Namespace for examples/.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Use this cluster [default: KUBECONFIG or ~/.kube/config when it answers, else the local "
              "control plane].")  # fmt: skip
@click.option("--examples", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=Path("examples"), show_default=True,
              help="The manifests and emulator seed to use (a checkout's examples/).")  # fmt: skip
@click.option("--gateway-port", type=int, default=None, help="The gateway's port [default: a free port].")
@click.option("--keep-logs", is_flag=True, help="Keep the processes' logs and the gateway's store.")
@click.option("--existing-namespace", is_flag=True,
              help="Use --namespace as it is (it must exist); delete only what the demo applied.")  # fmt: skip
@click.option("--operator-kubeconfig", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Run the operator with these credentials (e.g. the chart's ServiceAccount).")  # fmt: skip
@click.option("--gateway-kubeconfig", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Run the gateway with these credentials (e.g. the chart's ServiceAccount).")  # fmt: skip
def dev(
    once: bool,
    namespace: str,
    kubeconfig: Path | None,
    examples: Path,
    gateway_port: int | None,
    keep_logs: bool,
    existing_namespace: bool,
    operator_kubeconfig: Path | None,
    gateway_kubeconfig: Path | None,
) -> None:
    """The whole product on this machine with the emulator as Meta: `make demo` runs this."""
    from wabaplane.demo.run import main as run_demo
    from wabaplane.demo.stack import Options

    options = Options(examples.resolve(), namespace, kubeconfig, gateway_port, keep_logs, existing_namespace,
                      operator_kubeconfig, gateway_kubeconfig)  # fmt: skip
    run_demo(options, once)


@main.command()
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("charts/wabaplane"),
              show_default=True, help="The chart's directory.")  # fmt: skip
def chart(output_dir: Path) -> None:
    """Write the chart's generated files: values.yaml, values.schema.json and files/crds/."""
    from wabaplane.chart.render import write

    for path in write(output_dir):
        click.echo(f"wrote {path}")
