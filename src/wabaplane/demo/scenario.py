"""The demo's scenario: what a platform engineer wants to see work, each step checked, not just shown.

Customers write through the emulator (as Meta), the gateway routes and delivers, the tenants answer
through the gateway's send API with their own API keys. Every step waits on state, never on time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from wabaplane.demo.kubectl import DemoError
from wabaplane.demo.processes import wait_until
from wabaplane.demo.stack import Stack
from wabaplane.demo.table import render

GRAPH_VERSION = "v25.0"
DELIVERY_TIMEOUT = 30.0
# Customers: one who writes to each number, and one per tenant who never wrote (no open window).
ACME_CUSTOMER = "15551230001"
ACME_SALES_CUSTOMER = "15551230002"
ACME_NEW_CUSTOMER = "15551230099"
GLOBEX_CUSTOMER = "447700900123"
GLOBEX_NEW_CUSTOMER = "447700900999"
BURST_RECIPIENTS = 30


@dataclass
class Step:
    name: str
    expected: str
    observed: str = ""
    passed: bool = False


@dataclass
class Numbers:
    acme_support: str
    acme_sales: str
    globex_bookings: str


class Scenario:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.client = httpx.AsyncClient(timeout=30)
        self.inbound: dict[str, list[str]] = {"acme": [], "globex": []}

    @property
    def gateway(self) -> str:
        return self.stack.urls["gateway"]

    async def run(self) -> list[Step]:
        numbers = await self._numbers()
        for endpoint in self.stack.receivers.endpoints.values():
            # Deliveries made before the demo had read the secrets (template reviews) do not count.
            endpoint.bad_signatures = 0
        steps: list[tuple[Step, Callable[[Step], Awaitable[None]]]] = [
            (Step("Customers write to both tenants' numbers", "each receiver gets exactly its own messages, "
                  "signed with its own secret; none of the other's"), lambda s: self.isolation(s, numbers)),
            (Step("Replies inside the 24-hour window", "free text from each tenant is accepted and "
                  "reaches Meta"), lambda s: self.replies_in_window(s, numbers)),
            (Step("Templates outside the window", "each tenant reaches a customer who never wrote with an "
                  "approved template"), lambda s: self.templates_outside_window(s, numbers)),
            (Step("Free text outside the window", "refused by the gateway with 131047 before Meta sees it"),
             lambda s: self.free_text_outside_window(s, numbers)),
            (Step("Meta delivers a webhook twice", "the tenant receives it once"),
             lambda s: self.duplicate_webhook(s)),
            (Step("acme bursts past its quota", f"{BURST_RECIPIENTS} sends at once: the excess refused with "
                  "4290001 (429); globex sends meanwhile, unaffected"), lambda s: self.burst(s, numbers)),
        ]  # fmt: skip
        for step, action in steps:
            try:
                await action(step)
            except (DemoError, httpx.HTTPError, KeyError, ValueError, AssertionError) as error:
                step.passed = False
                step.observed = f"{step.observed} ERROR: {type(error).__name__}: {error}".strip()
        await self.client.aclose()
        return [step for step, _ in steps]

    # -- helpers -----------------------------------------------------------------------------------

    async def _numbers(self) -> Numbers:
        listed = await self.stack.kube.get_json("phonenumbers", "-n", self.stack.namespace)
        by_name = {item["metadata"]["name"]: item["spec"]["phoneNumberId"] for item in listed["items"]}
        return Numbers(by_name["acme-support"], by_name["acme-sales"], by_name["globex-bookings"])

    async def customer_writes(self, phone_number_id: str, customer: str, text: str) -> str:
        url = f"{self.stack.urls['emulator']}/_emulator/inbound"
        response = await self.client.post(url, json={"phone_number_id": phone_number_id, "from": customer,
                                                     "text": text, "name": "Demo Customer"})  # fmt: skip
        response.raise_for_status()
        return str(response.json()["id"])

    async def send(self, tenant: str, phone_number_id: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(
            f"{self.gateway}/{GRAPH_VERSION}/{phone_number_id}/messages",
            headers={"Authorization": f"Bearer {self.stack.api_keys[tenant]}"},
            json={"messaging_product": "whatsapp", **body},
        )

    async def deliveries(self, tenant: str) -> list[dict[str, Any]]:
        """Every delivery the gateway stored for the tenant, through its API, page by page."""
        found: list[dict[str, Any]] = []
        params = {"limit": "500"}
        while True:
            page = await self.client.get(f"{self.gateway}/v1/deliveries", params=params,
                                         headers={"Authorization": f"Bearer {self.stack.api_keys[tenant]}"})  # fmt: skip
            page.raise_for_status()
            found += page.json()["data"]
            if "next" not in page.json():
                return found
            params["after"] = page.json()["next"]

    def received_ids(self, tenant: str) -> list[str]:
        return [message["id"] for message in self.stack.receivers.endpoints[tenant].messages()]

    # -- the steps ---------------------------------------------------------------------------------

    async def isolation(self, step: Step, numbers: Numbers) -> None:
        self.inbound["acme"] = [
            await self.customer_writes(numbers.acme_support, ACME_CUSTOMER, "Hi! Where is my order #4521?"),
            await self.customer_writes(numbers.acme_sales, ACME_SALES_CUSTOMER, "Do you ship to Lisbon?"),
        ]
        self.inbound["globex"] = [
            await self.customer_writes(numbers.globex_bookings, GLOBEX_CUSTOMER, "Can I change my flight?")
        ]
        expected = self.inbound["acme"] + self.inbound["globex"]

        async def all_delivered() -> bool:
            return sum(len(self.received_ids(t)) for t in ("acme", "globex")) >= len(expected)

        await wait_until(all_delivered, "the customers' messages at the tenants' receivers", DELIVERY_TIMEOUT,
                         self.stack.processes)  # fmt: skip
        acme, globex = self.received_ids("acme"), self.received_ids("globex")
        endpoints = self.stack.receivers.endpoints
        bad = endpoints["acme"].bad_signatures + endpoints["globex"].bad_signatures
        step.observed = (
            f"acme received {len(acme)} ({_overlap(acme, self.inbound['globex'])} of globex's); globex received "
            f"{len(globex)} ({_overlap(globex, self.inbound['acme'])} of acme's); bad signatures: {bad}"
        )
        step.passed = (
            sorted(acme) == sorted(self.inbound["acme"])
            and sorted(globex) == sorted(self.inbound["globex"])
            and bad == 0
        )

    async def replies_in_window(self, step: Step, numbers: Numbers) -> None:
        acme = await self.send("acme", numbers.acme_support, {
            "to": ACME_CUSTOMER, "type": "text", "context": {"message_id": self.inbound["acme"][0]},
            "text": {"body": "Your order #4521 ships today."}})  # fmt: skip
        globex = await self.send("globex", numbers.globex_bookings, {
            "to": GLOBEX_CUSTOMER, "type": "text", "text": {"body": "Yes: reply with the new date."}})  # fmt: skip
        step.observed = f"acme: {_outcome(acme)}; globex: {_outcome(globex)}"
        step.passed = acme.status_code == 200 and globex.status_code == 200

    async def templates_outside_window(self, step: Step, numbers: Numbers) -> None:
        acme = await self.send("acme", numbers.acme_support, order_update(ACME_NEW_CUSTOMER, "#4522", "4522"))
        globex = await self.send("globex", numbers.globex_bookings, {
            "to": GLOBEX_NEW_CUSTOMER, "type": "template",
            "template": {"name": "booking_confirmed", "language": {"code": "en_GB"}, "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Sam"},
                                                {"type": "text", "text": "GX-2231"}]}]}})  # fmt: skip
        step.observed = f"acme order_update: {_outcome(acme)}; globex booking_confirmed: {_outcome(globex)}"
        step.passed = acme.status_code == 200 and globex.status_code == 200

    async def free_text_outside_window(self, step: Step, numbers: Numbers) -> None:
        before = await self._meta_send_count()
        refused = await self.send("acme", numbers.acme_support, {
            "to": ACME_NEW_CUSTOMER, "type": "text", "text": {"body": "Hello there!"}})  # fmt: skip
        after = await self._meta_send_count()
        code = _error_code(refused)
        step.observed = f"{_outcome(refused)}; sends that reached Meta: {after - before}"
        step.passed = refused.status_code == 400 and code == 131047 and after == before

    async def duplicate_webhook(self, step: Step) -> None:
        wamid = self.inbound["acme"][0]
        control = f"{self.stack.urls['emulator']}/_emulator/webhooks"
        sent = (await self.client.get(control)).json()["data"]
        original = next(d for d in sent if wamid in str(d["payload"]))
        again = (await self.client.post(f"{control}/{original['id']}/redeliver")).json()["id"]

        async def acknowledged() -> bool:
            found = (await self.client.get(control)).json()["data"]
            return any(d["id"] == again and d["delivered"] for d in found)

        # The gateway answers Meta only once the units are stored (or found to be duplicates).
        await wait_until(acknowledged, "the gateway to acknowledge the redelivered webhook", DELIVERY_TIMEOUT,
                         self.stack.processes)  # fmt: skip
        stored = [d for d in await self.deliveries("acme") if wamid in str(d["payload"])]
        received = self.received_ids("acme").count(wamid)
        duplicates = await self._metric("wabaplane_gateway_units_total", outcome="duplicate")
        step.observed = (
            f"Meta sent it 2 times (both answered 200); the gateway recognised {duplicates:.0f} units as "
            "duplicates; "
            f"deliveries stored for it: {len(stored)}; received by acme: {received}"
        )
        step.passed = len(stored) == 1 and received == 1 and duplicates >= 1

    async def burst(self, step: Step, numbers: Numbers) -> None:
        burst = [
            self.send(
                "acme", numbers.acme_sales, order_update(f"1555900{i:04d}", f"#{5000 + i}", str(5000 + i))
            )
            for i in range(BURST_RECIPIENTS)
        ]
        neighbour = self.send("globex", numbers.globex_bookings, {
            "to": GLOBEX_CUSTOMER, "type": "text", "text": {"body": "Your new date is confirmed."}})  # fmt: skip
        *answers, globex = await asyncio.gather(*burst, neighbour)
        accepted = sum(a.status_code == 200 for a in answers)
        quota = [a for a in answers if a.status_code == 429 and _error_code(a) == 4290001]
        other = len(answers) - accepted - len(quota)
        retry_after = quota[0].headers.get("Retry-After") if quota else None
        step.observed = (
            f"acme: {accepted} accepted, {len(quota)} refused 4290001 (Retry-After {retry_after} s), "
            f"{other} other; globex: {_outcome(globex)}"
        )
        step.passed = accepted > 0 and len(quota) > 0 and other == 0 and globex.status_code == 200

    async def _meta_send_count(self) -> int:
        messages = await self.client.get(f"{self.stack.urls['emulator']}/_emulator/messages")
        return len(messages.json()["data"])

    async def _metric(self, name: str, **labels: str) -> float:
        text = (await self.client.get(f"{self.gateway}/metrics")).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


def order_update(to: str, order: str, tracking: str) -> dict[str, Any]:
    """acme's `order_update` template (examples/templates.yaml) with every parameter it needs."""
    text = [{"type": "text", "text": value} for value in ("Maria", order, "Friday")]
    return {"to": to, "type": "template", "template": {
        "name": "order_update", "language": {"code": "en_US"}, "components": [
            {"type": "header", "parameters": [{"type": "text", "text": order}]},
            {"type": "body", "parameters": text},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": tracking}]},
        ]}}  # fmt: skip


def _overlap(received: list[str], others: list[str]) -> int:
    return len(set(received) & set(others))


def _error_code(response: httpx.Response) -> int | None:
    try:
        code = response.json().get("error", {}).get("code")
    except ValueError:
        return None
    return int(code) if isinstance(code, int) else None


def _outcome(response: httpx.Response) -> str:
    if response.status_code == 200:
        return "200 sent"
    code = _error_code(response)
    return f"{response.status_code} refused ({code})" if code is not None else f"{response.status_code}"


def report_table(steps: list[Step]) -> str:
    rows = [
        [str(number), step.name, step.expected, step.observed, "PASS" if step.passed else "FAIL"]
        for number, step in enumerate(steps, start=1)
    ]
    return render(["#", "Step", "Expected", "Observed", "Result"], rows, [2, 22, 34, 44, 6])
