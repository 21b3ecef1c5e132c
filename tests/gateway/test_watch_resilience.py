"""The gateway's routing table survives the API server connection dropping, on the real API server.

A TCP proxy sits between the gateway's watches and kube-apiserver; the test cuts every connection
and refuses new ones for a while, changes objects meanwhile, and checks the table catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tests.conftest import Kube, eventually
from wabaplane.gateway.cluster import ClusterView, api_client, watch_cluster

pytestmark = pytest.mark.cluster


class CuttableProxy:
    """Forwards loopback TCP to a target; can drop every connection and refuse new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refusing = False
        self.connections: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.accepted = 0
        self.refused = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused += 1
            writer.close()
            return
        self.accepted += 1
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.connections |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self.connections -= {writer, upstream_writer}

    def cut(self) -> None:
        for writer in list(self.connections):
            writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def proxied_kubeconfig(kube: Kube, port: int, path: Path) -> Path:
    config = yaml.safe_load(kube.kubeconfig.read_text())
    for cluster in config["clusters"]:
        server = urlparse(cluster["cluster"]["server"])
        cluster["cluster"]["server"] = f"{server.scheme}://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
async def proxy(kube: Kube) -> AsyncIterator[CuttableProxy]:
    config = yaml.safe_load(kube.kubeconfig.read_text())
    target = urlparse(config["clusters"][0]["cluster"]["server"]).port
    assert target is not None
    running = CuttableProxy(target)
    await running.start()
    yield running
    await running.close()


def number(namespace: str, name: str, phone_id: str) -> str:
    return json.dumps({"apiVersion": "wabaplane.io/v1alpha1", "kind": "PhoneNumber",
                       "metadata": {"namespace": namespace, "name": name},
                       "spec": {"tenantRef": {"name": "acme"}, "phoneNumberId": phone_id}})  # fmt: skip


async def test_the_routing_table_catches_up_after_the_api_server_connection_drops(
    kube: Kube, namespace: str, proxy: CuttableProxy, tmp_path: Path
) -> None:
    assert proxy.server is not None
    port = int(proxy.server.sockets[0].getsockname()[1])
    api = await api_client(str(proxied_kubeconfig(kube, port, tmp_path / "kubeconfig")))
    view = ClusterView()
    watching = asyncio.create_task(watch_cluster(api, view, (namespace,)))
    try:
        await eventually(lambda: view.synced, within=30, what="the first full list")
        await asyncio.to_thread(kube.run, "apply", "-f", "-", stdin=number(namespace, "first", "1001"))
        await eventually(lambda: (namespace, "first") in view.objects["phonenumbers"], what="the watch event")
        connected = proxy.accepted

        # Drop every watch and keep the API server unreachable while objects change.
        proxy.refusing = True
        proxy.cut()
        await asyncio.to_thread(kube.run, "apply", "-f", "-", stdin=number(namespace, "second", "1002"))
        await asyncio.to_thread(kube.run, "delete", "phonenumber", "first", "-n", namespace)
        # The outage lasts until the watchers have tried to reconnect and been refused.
        await eventually(lambda: proxy.refused >= 3, within=30, what="refused reconnection attempts")
        assert (namespace, "second") not in view.objects["phonenumbers"], "nothing reached the gateway yet"
        proxy.refusing = False

        def caught_up() -> bool:
            numbers = view.objects["phonenumbers"]
            return (namespace, "second") in numbers and (namespace, "first") not in numbers

        await eventually(caught_up, within=60, what="the table to catch up after the outage")
        assert proxy.accepted > connected, "the watchers connected again"
        assert view.snapshot.by_phone_id.get("1002"), "the routing snapshot was rebuilt, not only the objects"
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watching
        await api.close()
