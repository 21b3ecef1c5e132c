"""The gateway's application factory: routes, middlewares and one cleanup context per resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from wabaplane.gateway import ingest, keys, middlewares, sending, tenant_api
from wabaplane.gateway.cluster import ClusterView, api_client, watch_cluster
from wabaplane.gateway.delivery import Deliverer, tenant_label
from wabaplane.gateway.limits import Limits
from wabaplane.gateway.metrics import GatewayMetrics
from wabaplane.gateway.resource_metrics import ResourceStatusCollector
from wabaplane.gateway.settings import GatewaySettings
from wabaplane.gateway.shared_limits import SharedLimits
from wabaplane.store import Store

logger = logging.getLogger("wabaplane.gateway")
WEBHOOK_PATH = "/webhook"


def create_app(
    settings: GatewaySettings,
    *,
    view: ClusterView | None = None,
    store: Store | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The gateway. Tests may pass a prepared view (no cluster watch) and an open store."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            middlewares.request_ids(),
            middlewares.errors(),
            middlewares.load_shedding(settings.max_in_flight_requests, frozenset({WEBHOOK_PATH})),
        ],
    )
    app[keys.SETTINGS] = settings
    app[keys.METRICS] = GatewayMetrics()
    app[keys.CLOCK] = clock
    app[keys.VIEW] = view if view is not None else ClusterView()
    app[keys.METRICS].registry.register(ResourceStatusCollector(app[keys.VIEW]))
    app.cleanup_ctx.append(_store_context(store))
    if view is None and settings.watch_cluster:
        app.cleanup_ctx.append(_cluster_context)
    app.cleanup_ctx.append(_delivery_context)
    app.cleanup_ctx.append(_housekeeping_context)
    app.cleanup_ctx.append(_graph_context)
    app.cleanup_ctx.append(_limits_context)
    if settings.metrics_port is not None:
        app.cleanup_ctx.append(_metrics_server_context)
    app[keys.SEND_SLOTS] = {}
    setup_routes(app)
    return app


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get(WEBHOOK_PATH, ingest.handshake)
    router.add_post(WEBHOOK_PATH, ingest.receive)
    router.add_get("/v1/deliveries", tenant_api.list_deliveries)
    router.add_post("/v1/deliveries/replay", tenant_api.replay_range)
    router.add_get("/v1/deliveries/{id}", tenant_api.get_delivery)
    router.add_post("/v1/deliveries/{id}/replay", tenant_api.replay_one)
    router.add_get("/v1/dead-letters", tenant_api.list_dead_letters)
    router.add_post("/v1/endpoint/enable", tenant_api.enable_endpoint)
    router.add_get("/v1/admin/unroutable", tenant_api.list_unroutable)
    router.add_post(r"/{version:v\d+\.\d+}/{phone_id:\d+}/messages", sending.send)
    router.add_get("/v1/conversations", tenant_api.list_conversations)
    router.add_get("/v1/conversations/{id}/messages", tenant_api.list_conversation_messages)
    # Message ids (wamid.<base64>) may contain "/".
    router.add_get("/v1/messages/{id:.+}", tenant_api.get_message)
    router.add_get("/v1/usage", tenant_api.get_usage)
    if app[keys.SETTINGS].metrics_port is None:
        router.add_get("/metrics", metrics)
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)


def _store_context(given: Store | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        store = (
            given if given is not None else await Store.open(app[keys.SETTINGS].store_url, app[keys.CLOCK])
        )
        app[keys.STORE] = store
        yield
        if given is None:
            await store.close()

    return context


async def _cluster_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    api = await api_client(settings.kubeconfig)
    task = asyncio.create_task(watch_cluster(api, app[keys.VIEW], settings.namespaces))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await api.close()


async def _delivery_context(app: web.Application) -> AsyncIterator[None]:
    deliverer = Deliverer(
        app[keys.STORE], app[keys.VIEW], app[keys.SETTINGS], app[keys.METRICS], app[keys.CLOCK]
    )
    await deliverer.start()
    app[keys.DELIVERER] = deliverer
    task = asyncio.create_task(deliverer.run())
    yield
    deliverer.stop()
    await task
    await deliverer.close()


async def _limits_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    if settings.redis_url is None:
        # One replica, or limits per replica: each enforces its share.
        app[keys.LIMITS] = Limits(share=1.0 / settings.replicas)
        yield
        return
    shared = SharedLimits(settings.redis_url, settings.replicas)
    app[keys.LIMITS] = shared
    yield
    await shared.close()


async def _graph_context(app: web.Application) -> AsyncIterator[None]:
    # No retries here: a send is forwarded once, so Meta never sends it twice.
    # Connections are bounded per tenant (sending.py), not here: a shared pool would let one
    # tenant's burst queue everyone else's sends behind it.
    # aiohttp rather than httpx here: httpcore's pool costs grow with concurrent requests and it
    # retries an import on every request when sniffio is absent; the send path is the hot path.
    timeout = aiohttp.ClientTimeout(total=app[keys.SETTINGS].meta_timeout)
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        app[keys.GRAPH] = session
        yield


async def _housekeeping_context(app: web.Application) -> AsyncIterator[None]:
    stopping = asyncio.Event()
    task = asyncio.create_task(_housekeeping(app, stopping))
    yield
    stopping.set()
    await task


async def _housekeeping(app: web.Application, stopping: asyncio.Event) -> None:
    """Keep the outbox gauges current and forget units past their retention."""
    settings, store, gauges = app[keys.SETTINGS], app[keys.STORE], app[keys.METRICS]
    last_purge = 0.0
    while not stopping.is_set():
        try:
            stats = await store.stats()
            gauges.outbox_depth.set(stats.pending)
            gauges.outbox_age.set(stats.oldest_pending_age)
            gauges.unroutable.set(stats.unroutable)
            gauges.dead_letters.clear()
            for (namespace, tenant), count in stats.dead_by_tenant.items():
                gauges.dead_letters.labels(tenant=tenant_label(namespace, tenant)).set(count)
            app[keys.DELIVERER].disabled = await store.disabled_endpoints()
            if time.monotonic() - last_purge > 3600:
                purged = await store.purge(settings.retention_seconds, settings.dead_retention_seconds)
                purged += await store.purge_message_log(settings.message_retention_seconds,
                                                        settings.idempotency_seconds)  # fmt: skip
                last_purge = time.monotonic()
                if purged:
                    logger.info("purged %d units past their retention", purged)
        except (SQLAlchemyError, OSError) as error:
            logger.warning("housekeeping: store unavailable: %s", type(error).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=settings.stats_interval)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[keys.METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _metrics_server_context(app: web.Application) -> AsyncIterator[None]:
    """/metrics on a port of its own: tenant names in labels stay off the public port (and Ingress)."""
    settings = app[keys.SETTINGS]
    metrics_app = web.Application()
    metrics_app[keys.METRICS] = app[keys.METRICS]
    metrics_app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(metrics_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
    yield
    await runner.cleanup()


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """Ready once the routing table has been fully loaded and the store answers."""
    if not request.app[keys.VIEW].synced:
        return web.json_response({"ready": False, "reason": "routing table not loaded yet"}, status=503)
    try:
        await request.app[keys.STORE].ping()
    except (SQLAlchemyError, OSError):
        return web.json_response({"ready": False, "reason": "store unavailable"}, status=503)
    return web.json_response({"ready": True})
