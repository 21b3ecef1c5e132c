"""Send API benchmark: template sends through the gateway, against the same sends straight to "Meta".

Both targets are measured in the same run against the same emulator process (as Meta), so the ratio
is the gateway's cost: API key, ownership, window, template and limit checks, the idempotency and
message log in its store, and one more HTTP hop. Each send goes to a new customer (Meta's pair
rate would refuse repeats) from one of 20 tenants' numbers. Usage:

    .venv/bin/python bench/send.py [--sends 3000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest import free_port, summarise, wait_until_answers  # noqa: E402 - after the path is set

TENANTS = 20
TEMPLATE = "bench_update"
WABAPLANE = str(Path(sys.executable).parent / "wabaplane")


def waba(i: int) -> str:
    return str(102290129340000 + i)


def phone(i: int) -> str:
    return str(106540352240000 + i)


def token(i: int) -> str:
    return f"EAAbench-token-{i}"


def api_key(i: int) -> str:
    return f"wpk_bench-key-{i}"


def seed() -> dict[str, Any]:
    return {
        "businesses": [{"id": str(500000000000000 + i), "name": f"Business {i}", "wabas": [{
            "id": waba(i), "name": f"WABA {i}", "subscribed": True, "phone_numbers": [{
                "id": phone(i), "display_phone_number": f"+1 555-010-{i:04d}", "verified_name": f"Tenant {i}",
                "registered": True, "messaging_limit": "TIER_100K"}]}]} for i in range(TENANTS)],
        "tokens": [{"value": token(i), "wabas": [waba(i)]} for i in range(TENANTS)],
    }  # fmt: skip


def send_body(sequence: int) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": f"1555{sequence:07d}", "type": "template",
            "template": {"name": TEMPLATE, "language": {"code": "en_US"}, "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}]}}  # fmt: skip


# -- the gateway, in its own process, with a routing table of TENANTS ready tenants --------------


def serve_gateway(port: int, store_url: str, graph_url: str) -> None:
    from aiohttp import web
    from pydantic import SecretStr
    from tests.gateway.conftest import make_view, number_obj, secret_obj, tenant_obj, tenant_secrets

    from wabaplane.gateway.app import create_app
    from wabaplane.gateway.settings import GatewaySettings

    quotas = {"messagesPerSecond": 10000, "burst": 10000}
    tenants = [tenant_obj(f"ns{i}", f"t{i}", waba(i), None, quotas=quotas) for i in range(TENANTS)]
    numbers = [number_obj(f"ns{i}", "n", f"t{i}", phone(i), f"1555010{i:04d}") for i in range(TENANTS)]
    for number in numbers:
        number["status"]["messagingLimit"] = "TIER_100K"
    secrets = [
        s for i in range(TENANTS) for s in tenant_secrets(f"ns{i}", f"t{i}", api_key(i), f"whsec_{i:032d}")
    ]
    secrets += [secret_obj(f"ns{i}", f"t{i}-meta-token", {"token": token(i)}) for i in range(TENANTS)]
    view = make_view(tenants, numbers, secrets)
    view.load("messagetemplates", [{
        "metadata": {"namespace": f"ns{i}", "name": "bench-update"},
        "spec": {"tenantRef": {"name": f"t{i}"}, "name": TEMPLATE, "language": "en_US", "category": "UTILITY",
                 "components": [{"type": "BODY", "text": "Hi {{1}}, your order is on its way."}]},
        "status": {"templateStatus": "APPROVED", "category": "UTILITY"}} for i in range(TENANTS)])  # fmt: skip
    settings = GatewaySettings(store_url=store_url, app_secrets=[SecretStr("bench")], watch_cluster=False,
                               graph_url=graph_url, max_in_flight_requests=1024)  # fmt: skip
    import uvloop

    web.run_app(create_app(settings, view=view), host="127.0.0.1", port=port, print=None, access_log=None,
                loop=uvloop.new_event_loop())  # fmt: skip


# -- load --------------------------------------------------------------------------------------


async def create_templates(emulator: str) -> None:
    """One template per WABA at the emulator, then wait until its review approves them all."""
    async with aiohttp.ClientSession() as session:
        for i in range(TENANTS):
            body = {"name": TEMPLATE, "language": "en_US", "category": "UTILITY", "components": [
                {"type": "BODY", "text": "Hi {{1}}, your order is on its way.", "example": {"body_text": [["Ann"]]}}]}  # fmt: skip
            async with session.post(f"{emulator}/v25.0/{waba(i)}/message_templates", json=body,
                                    headers={"Authorization": f"Bearer {token(i)}"}) as response:  # fmt: skip
                response.raise_for_status()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            async with session.get(f"{emulator}/_emulator/state") as response:
                state = await response.json()
            statuses = [t["status"] for t in state.get("templates", {}).values()]
            if len(statuses) == TENANTS and all(s == "APPROVED" for s in statuses):
                return
            await asyncio.sleep(0.2)
    raise RuntimeError("the emulator did not approve the templates")


async def closed_loop(
    base: str, credentials: list[str], sends: int, start: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    sequence = itertools.count(start)
    remaining = iter(range(sends))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal failures
            for _ in remaining:
                n = next(sequence)
                tenant = n % TENANTS
                began = time.perf_counter()
                async with session.post(f"{base}/v25.0/{phone(tenant)}/messages", data=json.dumps(send_body(n)),
                                        headers={"Authorization": f"Bearer {credentials[tenant]}",
                                                 "Content-Type": "application/json"}) as response:  # fmt: skip
                    await response.read()
                    failures += response.status != 200
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return summarise(latencies, elapsed, failures)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sends", type=int, default=3000, help="Sends per target.")
    parser.add_argument("--concurrency", type=int, default=32)
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="wabaplane-bench-send-"))
    seed_file = workdir / "seed.yaml"
    seed_file.write_text(yaml.safe_dump(seed()))
    emulator_port, gateway_port = free_port(), free_port()
    emulator_url, gateway_url = f"http://127.0.0.1:{emulator_port}", f"http://127.0.0.1:{gateway_port}"
    emulator = subprocess.Popen([WABAPLANE, "emulator", "--port", str(emulator_port), "--seed", str(seed_file),
                                 "--review-seconds", "0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    gateway = subprocess.Popen([sys.executable, __file__, "serve", str(gateway_port),
                                f"sqlite:///{workdir / 'gateway.db'}", emulator_url],
                               env={"PYTHONPATH": str(REPO), "PATH": ""}, stdout=subprocess.DEVNULL)  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    try:
        asyncio.run(wait_until_answers(f"{emulator_url}/_emulator/"))
        asyncio.run(wait_until_answers(f"{gateway_url}/readyz"))
        asyncio.run(create_templates(emulator_url))
        tokens = [token(i) for i in range(TENANTS)]
        keys = [api_key(i) for i in range(TENANTS)]
        # Warm both paths, then alternate, so that neither runs on a quieter machine than the other.
        asyncio.run(closed_loop(emulator_url, tokens, 200, 9_000_000, options.concurrency))
        asyncio.run(closed_loop(gateway_url, keys, 200, 9_500_000, options.concurrency))
        for round_ in range(2):
            for name, url, credentials in (("straight to the emulator", emulator_url, tokens),
                                           ("through the gateway", gateway_url, keys)):  # fmt: skip
                print(f"{name}, round {round_ + 1} ...", file=sys.stderr)
                offset = (round_ * 2 + (name == "through the gateway")) * 1_000_000
                results[f"{name} (round {round_ + 1})"] = asyncio.run(
                    closed_loop(url, credentials, options.sends, offset, options.concurrency)
                )
    finally:
        for process in (gateway, emulator):
            process.terminate()
            process.wait(timeout=20)
    report(results, options)


def report(results: dict[str, dict[str, float]], options: argparse.Namespace) -> None:
    print("\n| target | sends/s | p50 ms | p99 ms | failures |")
    print("|---|---:|---:|---:|---:|")
    for name, row in results.items():
        print(f"| {name} | {row['per_second']:.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
              f"{row['failures']:.0f} |")  # fmt: skip
    for round_ in (1, 2):
        direct = results[f"straight to the emulator (round {round_})"]["per_second"]
        gateway = results[f"through the gateway (round {round_})"]["per_second"]
        print(f"round {round_}: the gateway sends at {gateway / direct:.2f} of the direct rate")
    print(
        f"\nclosed loop, Python aiohttp, concurrency {options.concurrency}, {options.sends} sends per target"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve_gateway(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        main()
