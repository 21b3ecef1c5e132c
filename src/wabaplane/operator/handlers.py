"""Everything kopf runs: framework settings, shared clients, the management endpoint, the handlers."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from aiohttp import web
from kubernetes.client.exceptions import ApiException

from wabaplane.api.common import GROUP
from wabaplane.meta.client import GraphClient
from wabaplane.operator import management, messagetemplate, phonenumber, tenant
from wabaplane.operator.context import Clients
from wabaplane.operator.kube import Kube
from wabaplane.operator.settings import OperatorSettings

__all__ = ["messagetemplate", "phonenumber", "tenant"]


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    # Progress and the last-handled spec go to annotations under our domain, so status stays fully
    # typed (a structural schema would prune kopf's status fields).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.persistence.finalizer = f"{GROUP}/cleanup"
    # Watches end on the server side before any proxy would cut them (kopf issues 698, 204).
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 30
    settings.posting.level = logging.INFO
    settings.execution.max_workers = 8

    operator_settings = OperatorSettings.from_environment()
    graph = GraphClient(
        operator_settings.graph_url,
        operator_settings.api_version,
        app_id=operator_settings.app_id,
        app_secret=operator_settings.app_secret,
    )
    shared = Clients(settings=operator_settings, graph=graph, kube=Kube())
    memo["clients"] = shared
    if not settings.peering.standalone and settings.peering.name:
        settings.peering.lifetime = operator_settings.peering_lifetime_seconds
        namespaces = () if settings.peering.clusterwide else operator_settings.namespaces
        await _ensure_peering(shared.kube, settings.peering.name, namespaces)
        logger.info("peering through %r with priority %d", settings.peering.name, settings.peering.priority)
    if operator_settings.management_token:
        runner = web.AppRunner(management.create_app(shared), handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", operator_settings.management_port).start()  # noqa: S104 - a Service fronts it
        memo["management_runner"] = runner
        logger.info("management events endpoint on port %d", operator_settings.management_port)
    else:
        logger.warning("WABAPLANE_MANAGEMENT_TOKEN is not set: the management events endpoint is off")


async def _ensure_peering(kube: Kube, name: str, namespaces: tuple[str, ...]) -> None:
    # Startup handlers finish before kopf watches anything, so the peering object exists before this
    # replica decides whether it works or waits. Without the CRD the operator stops: were the CRD
    # added later without the object, every replica would work at once.
    try:
        await kube.ensure_peering(name, namespaces)
    except ApiException as error:
        if error.status == 404:
            raise kopf.PermanentError(
                "--peering needs kopf's peering CRD (kopfpeerings.kopf.dev; clusterkopfpeerings.kopf.dev for a "
                "cluster-wide operator): the chart installs it with operator.replicas > 1, or apply "
                "charts/wabaplane/files/kopfpeerings.yaml"
            ) from None
        raise kopf.PermanentError(
            f"cannot create the peering object {name!r}: {error.status} {error.reason}"
        ) from None


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    runner = memo.get("management_runner")
    if runner is not None:
        await runner.cleanup()
    shared = memo.get("clients")
    if isinstance(shared, Clients):
        await shared.graph.aclose()
        await shared.kube.close()


@kopf.on.probe(id="graph")
def graph_configured(memo: kopf.Memo, **_: Any) -> bool:
    return isinstance(memo.get("clients"), Clients)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a Pod its ServiceAccount, else the kubeconfig in KUBECONFIG, read now.

    kopf's default login goes through the kubernetes client, which reads KUBECONFIG once at import
    time; reading it here lets tests and `wabaplane dev` point the operator at any cluster.
    """
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(
        **kwargs
    ) or kopf.login_with_kubeconfig(**kwargs)
    return info
