"""`wabaplane gateway` as a process against the real API server: live routing table, crash safety."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook

from tests.conftest import Kube, eventually, free_port
from tests.emulator.conftest import ACME_SALES, ACME_SUPPORT, ACME_WABA, SEED
from tests.gateway.conftest import (
    APP_SECRET,
    VERIFY_TOKEN,
    Receiver,
    Receivers,
    signed,
    text_message,
    webhook_secret_for,
)
from wabaplane.emulator.app import create_app as create_emulator
from wabaplane.emulator.config import EmulatorSettings
from wabaplane.emulator.graph import EMULATOR_KEY
from wabaplane.emulator.seed import Seed

pytestmark = pytest.mark.cluster
API_KEY = "wpk_process-test-key"


@dataclass
class GatewayProcess:
    url: str
    args: list[str]
    process: subprocess.Popen[str] | None = None
    stderr: str = ""

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    async def ready(self) -> None:
        async def answers() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, self.process.communicate()[1][-3000:]
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{self.url}/readyz", timeout=1)).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(answers, within=30, what="the gateway to be ready")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        self.stderr = self.process.communicate(timeout=20)[1]


@contextmanager
def gateway_process(kube: Kube, store: Path, namespace: str, *extra: str) -> Iterator[GatewayProcess]:
    port = free_port()
    args = [str(Path(sys.executable).parent / "wabaplane"), "gateway", "--host", "127.0.0.1", "--port", str(port),
            "--store-url", f"sqlite:///{store}", "--kubeconfig", str(kube.kubeconfig), "--namespace", namespace,
            "--app-secret", APP_SECRET, "--verify-token", VERIFY_TOKEN, "--allow-http", "--allow-cidr", "127.0.0.0/8",
            "--retry-schedule", ",".join(["200ms"] * 50), *extra]  # fmt: skip
    running = GatewayProcess(f"http://127.0.0.1:{port}", args)
    running.start()
    try:
        yield running
    finally:
        running.stop()


async def kubectl(kube: Kube, *args: str, stdin: str | None = None) -> str:
    return (await asyncio.to_thread(kube.run, *args, stdin=stdin)).stdout


async def apply(kube: Kube, *objects: dict[str, Any]) -> None:
    await kubectl(
        kube,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )


async def set_status(kube: Kube, namespace: str, kind: str, name: str, status: dict[str, Any]) -> None:
    await kubectl(kube, "-n", namespace, "patch", kind, name, "--subresource=status", "--type=merge",
                  "-p", json.dumps({"status": status}))  # fmt: skip


def secret(namespace: str, name: str, kind: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"namespace": namespace, "name": name,
                         "labels": {"wabaplane.io/tenant": "acme", "wabaplane.io/secret-type": kind}},
            "stringData": data}  # fmt: skip


async def onboard_acme(kube: Kube, namespace: str, url: str, webhook_secret: str) -> None:
    """What the operator would have done: a Tenant proven to own its WABA, its Secrets, a Ready number."""
    await apply(
        kube,
        secret(namespace, "acme-api-key", "api-key", {"api-key": API_KEY}),
        secret(namespace, "acme-webhook-secret", "webhook-secret", {"secret": webhook_secret}),
        {"apiVersion": "wabaplane.io/v1alpha1", "kind": "Tenant", "metadata": {"namespace": namespace, "name": "acme"},
         "spec": {"displayName": "Acme", "wabaId": ACME_WABA, "credentials": {"tokenSecretRef": {"name": "t", "key": "token"}},
                  "webhook": {"url": url, "fields": ["messages"]}}},
        {"apiVersion": "wabaplane.io/v1alpha1", "kind": "PhoneNumber",
         "metadata": {"namespace": namespace, "name": "support"},
         "spec": {"tenantRef": {"name": "acme"}, "phoneNumberId": ACME_SUPPORT}},
    )  # fmt: skip
    await set_status(kube, namespace, "tenant", "acme", {
        "conditions": [{"type": "CredentialsValid", "status": "True", "reason": "TokenValid", "message": "ok",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "apiKeySecretName": "acme-api-key", "webhookSecretName": "acme-webhook-secret"})  # fmt: skip
    await set_ready(kube, namespace, "support")


async def suspend(kube: Kube, namespace: str, suspended: bool) -> None:
    patch = json.dumps({"spec": {"suspended": suspended}})
    await kubectl(kube, "-n", namespace, "patch", "tenant", "acme", "--type=merge", "-p", patch)


async def set_ready(kube: Kube, namespace: str, name: str, ready: bool = True) -> None:
    await set_status(kube, namespace, "phonenumber", name, {
        "displayPhoneNumber": "+1 555-010-0001",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "Reconciled",
                        "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})  # fmt: skip


async def post(gateway: GatewayProcess, payload: dict[str, Any]) -> httpx.Response:
    body, headers = signed({"object": "whatsapp_business_account", "entry": [payload]})
    async with httpx.AsyncClient() as client:
        return await client.post(f"{gateway.url}/webhook", content=body, headers=headers, timeout=10)


@pytest.fixture
async def acme_receiver(receivers: Receivers) -> Receiver:
    return await receivers()


async def test_the_routing_table_follows_the_cluster_within_seconds(
    kube: Kube, namespace: str, tmp_path: Path, acme_receiver: Receiver
) -> None:
    old_secret = webhook_secret_for("acme-old")
    await onboard_acme(kube, namespace, acme_receiver.url, old_secret)
    with gateway_process(kube, tmp_path / "gateway.db", namespace) as gateway:
        await gateway.ready()
        assert (await post(gateway, text_message(ACME_SUPPORT, ACME_WABA, "wamid.one"))).status_code == 200
        await eventually(lambda: acme_receiver.ids() == ["wamid.one"], what="the first delivery")
        Webhook(old_secret).verify(acme_receiver.hits[0].body, acme_receiver.hits[0].headers)

        # A number added to the cluster routes as soon as it is Ready.
        assert (await post(gateway, text_message(ACME_SALES, ACME_WABA, "wamid.early"))).status_code == 200
        await apply(kube, {"apiVersion": "wabaplane.io/v1alpha1", "kind": "PhoneNumber",
                           "metadata": {"namespace": namespace, "name": "sales"},
                           "spec": {"tenantRef": {"name": "acme"}, "phoneNumberId": ACME_SALES}})  # fmt: skip
        await set_ready(kube, namespace, "sales")

        async def sales_routes() -> bool:
            await post(gateway, text_message(ACME_SALES, ACME_WABA, f"wamid.sales.{len(acme_receiver.hits)}"))
            return any(i.startswith("wamid.sales") for i in acme_receiver.ids())

        await eventually(sales_routes, within=20, what="the new number to route")
        assert "wamid.early" not in acme_receiver.ids(), (
            "an event from before the number was Ready stays unroutable"
        )

        # A rotated webhook secret signs the next delivery.
        new_secret = webhook_secret_for("acme-new")
        await apply(kube, secret(namespace, "acme-webhook-secret", "webhook-secret", {"secret": new_secret}))

        async def signed_with_new() -> bool:
            await post(gateway, text_message(ACME_SUPPORT, ACME_WABA, f"wamid.rot.{len(acme_receiver.hits)}"))
            last = acme_receiver.hits[-1]
            try:
                Webhook(new_secret).verify(last.body, last.headers)
            except Exception:
                return False
            return True

        await eventually(signed_with_new, within=20, what="deliveries signed with the rotated secret")

        # Suspension holds deliveries; lifting it delivers them.
        await suspend(kube, namespace, True)
        async with httpx.AsyncClient() as client:

            async def held() -> bool:
                metrics = (await client.get(f"{gateway.url}/metrics")).text
                return f'reason="suspended",tenant="{namespace}/acme"' in metrics

            async def posted_and_held() -> bool:
                await post(gateway, text_message(ACME_SUPPORT, ACME_WABA, "wamid.held"))
                return await held()

            before = len(acme_receiver.hits)
            await eventually(posted_and_held, within=20, what="the suspension to hold deliveries")
            assert "wamid.held" not in acme_receiver.ids()
            await suspend(kube, namespace, False)
            await eventually(
                lambda: "wamid.held" in acme_receiver.ids(), within=20, what="held deliveries after resuming"
            )
            assert len(acme_receiver.hits) > before

            deliveries = (
                await client.get(
                    f"{gateway.url}/v1/deliveries", headers={"Authorization": f"Bearer {API_KEY}"}
                )
            ).json()
            assert {
                d["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
                for d in deliveries["data"]
            } >= {"wamid.one", "wamid.held"}
    logs = gateway.stderr
    assert '"request_id"' in logs or '"level"' in logs, "the gateway logs JSON lines"
    for secret_value in (APP_SECRET, VERIFY_TOKEN, API_KEY, old_secret, new_secret):
        assert secret_value not in logs


@pytest.fixture
async def emulator_for(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[str], Awaitable[Any]]]:
    servers: list[TestServer] = []

    async def start(callback_url: str) -> Any:
        settings = EmulatorSettings(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, callback_url=callback_url,
                                    webhook_retry_schedule=[0.2] * 100, webhook_batch_window=0.01)  # fmt: skip
        app = create_emulator(settings, Seed.model_validate(SEED))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return app[EMULATOR_KEY]

    yield start
    for server in servers:
        await server.close()


async def test_a_gateway_killed_mid_stream_delivers_every_acknowledged_event_once(
    kube: Kube, namespace: str, tmp_path: Path, acme_receiver: Receiver, emulator_for: Any
) -> None:
    await onboard_acme(kube, namespace, acme_receiver.url, webhook_secret_for("acme"))
    store = tmp_path / "gateway.db"
    with gateway_process(kube, store, namespace) as first:
        await first.ready()
        emulator = await emulator_for(f"{first.url}/webhook")
        sent = []
        for index in range(60):
            sent.append(
                emulator.inbound(
                    ACME_SUPPORT, "15551234567", "Customer", {"type": "text", "text": {"body": f"m{index}"}}
                )
            )
            if index == 25:
                await eventually(lambda: len(acme_receiver.hits) >= 5, what="deliveries under way")
                first.kill()
            await asyncio.sleep(0.005)
        acknowledged = [d for d in emulator.dispatcher.deliveries if d.delivered]
        assert acknowledged, "some POSTs were acknowledged before the kill"
    # The same port and store, so Meta's (the emulator's) retries reach the new process.
    restarted = GatewayProcess(first.url, first.args)
    restarted.start()
    try:
        await restarted.ready()
        await eventually(lambda: all(d.delivered for d in emulator.dispatcher.deliveries), within=60,
                         what="the emulator's retries to be acknowledged")  # fmt: skip
        await eventually(
            lambda: set(acme_receiver.ids()) >= set(sent), within=60, what="every message delivered"
        )
    finally:
        restarted.stop()
    by_message: dict[str, set[str]] = {}
    for hit in acme_receiver.hits:
        for message_id in hit.message_ids:
            by_message.setdefault(message_id, set()).add(hit.headers["webhook-id"])
    assert set(by_message) == set(sent)
    assert all(len(ids) == 1 for ids in by_message.values()), "a message never arrives under two webhook-ids"
