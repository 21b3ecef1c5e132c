"""Webhook ingest benchmark: signed, realistic Meta batches on loopback.

Targets, measured in the same run on the same machine:
  gateway-sqlite    the gateway (verify, split, route, commit to SQLite WAL + FULL sync), no delivery
  gateway-postgres  the same with a throw-away PostgreSQL (needs Debian's postgresql)
  bare-aiohttp      an aiohttp app answering 200: the ceiling of the stack and of this load generator
  naive-flask       the seed articles' style: Flask, a database lookup per request, synchronous forwarding

Each target runs in its own process; the load generator is a closed loop at fixed concurrency
(throughput, latency), then for the SQLite gateway an open loop at half that throughput (latency
at half load). Usage:

    .venv/bin/python bench/ingest.py [--requests 6000] [--concurrency 32] [--targets ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
APP_SECRET = "bench-app-secret"  # noqa: S105 - a benchmark fixture
TENANTS = 20
TARGETS = ("gateway-sqlite", "gateway-postgres", "bare-aiohttp", "naive-flask")


def waba(i: int) -> str:
    return str(102290129340000 + i)


def phone(i: int) -> str:
    return str(106540352240000 + i)


# -- realistic batches --------------------------------------------------------------------------


def _status(tenant: int, n: int) -> dict[str, Any]:
    return {"id": f"wamid.S{tenant}.{n}", "status": random.choice(["sent", "delivered", "read"]),  # noqa: S311
            "timestamp": "1800000000", "recipient_id": "15551234567",
            "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility", "type": "regular"}}  # fmt: skip


def _change(tenant: int, value: dict[str, Any]) -> dict[str, Any]:
    return {"id": waba(tenant), "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100001", "phone_number_id": phone(tenant)}, **value}}]}  # fmt: skip


def body(n: int) -> dict[str, Any]:
    """70 % one status, 20 % one inbound text, 10 % a batch of five statuses over two tenants."""
    tenant = n % TENANTS
    roll = n % 10
    if roll < 7:
        entries = [_change(tenant, {"statuses": [_status(tenant, n)]})]
    elif roll < 9:
        entries = [_change(tenant, {
            "contacts": [{"profile": {"name": "Customer Ünïcode"}, "wa_id": "15551234567"}],
            "messages": [{"from": "15551234567", "id": f"wamid.M{n}", "timestamp": "1800000000", "type": "text",
                          "text": {"body": "Hello, I would like to know where my order is 📦"}}]})]  # fmt: skip
    else:
        other = (tenant + 1) % TENANTS
        entries = [_change(tenant, {"statuses": [_status(tenant, n * 10 + k) for k in range(3)]}),
                   _change(other, {"statuses": [_status(other, n * 10 + k) for k in range(3, 5)]})]  # fmt: skip
    return {"object": "whatsapp_business_account", "entry": entries}


def signed_requests(count: int, offset: int) -> list[tuple[bytes, dict[str, str]]]:
    from wabaplane.emulator.webhooks import serialise, sign

    requests = []
    for n in range(offset, offset + count):
        raw = serialise(body(n))
        requests.append(
            (raw, {"Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, APP_SECRET)})
        )
    return requests


# -- servers (each run in its own process by `serve`) ---------------------------------------------


def serve_gateway(port: int, store_url: str) -> None:
    from aiohttp import web
    from pydantic import SecretStr
    from tests.gateway.conftest import make_view, number_obj, tenant_obj

    from wabaplane.gateway.app import create_app
    from wabaplane.gateway.settings import GatewaySettings

    view = make_view([tenant_obj(f"ns{i}", f"t{i}", waba(i), None) for i in range(TENANTS)],
                     [number_obj(f"ns{i}", "n", f"t{i}", phone(i), "15550100001") for i in range(TENANTS)], [])  # fmt: skip
    settings = GatewaySettings(store_url=store_url, app_secrets=[SecretStr(APP_SECRET)], watch_cluster=False,
                               max_in_flight_requests=1024)  # fmt: skip
    import uvloop

    web.run_app(create_app(settings, view=view), host="127.0.0.1", port=port, print=None, access_log=None,
                loop=uvloop.new_event_loop())  # fmt: skip


def serve_bare(port: int) -> None:
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application(client_max_size=3 * 1024 * 1024)
    app.router.add_post("/webhook", ok)
    app.router.add_post("/hooks", ok)

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/readyz", ready)
    import uvloop

    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=uvloop.new_event_loop())


def serve_flask(port: int, database: str, sink: str) -> None:
    import hashlib
    import hmac

    import httpx
    from flask import Flask, request
    from werkzeug.serving import run_simple

    app = Flask("naive")

    @app.get("/readyz")
    def ready() -> str:
        return "ok"

    @app.post("/webhook")
    def webhook() -> tuple[str, int]:
        raw = request.get_data()
        expected = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
            return "bad signature", 401
        payload = json.loads(raw)
        for entry in payload["entry"]:
            for change in entry["changes"]:
                db = sqlite3.connect(database)
                row = db.execute("SELECT url FROM tenants WHERE phone_number_id = ?",
                                 (change["value"]["metadata"]["phone_number_id"],)).fetchone()  # fmt: skip
                db.close()
                if row:
                    httpx.post(row[0], json={"object": payload["object"], "entry": [entry]}, timeout=10)
        return "ok", 200

    run_simple("127.0.0.1", port, app, threaded=True)


# -- the load generator -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_answers(url: str) -> None:
    """Until a GET of the URL answers 200 (at most 30 s)."""
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


async def _wait_ready(url: str) -> None:
    await wait_until_answers(url + "/readyz")


async def timed_post(session: aiohttp.ClientSession, url: str, raw: bytes, headers: dict[str, str],
                     latencies: list[float]) -> bool:  # fmt: skip
    """POST one webhook, record its latency; True when it was answered 200."""
    started = time.perf_counter()
    async with session.post(url + "/webhook", data=raw, headers=headers) as response:
        await response.read()
        ok = response.status == 200
    latencies.append(time.perf_counter() - started)
    return ok


async def closed_loop(
    url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            for raw, headers in queue:
                failures += not await timed_post(session, url, raw, headers, latencies)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return summarise(latencies, elapsed, failures)


async def open_loop(url: str, requests: list[tuple[bytes, dict[str, str]]], rate: float) -> dict[str, float]:
    """Requests sent on a fixed schedule (not waiting for answers): latency at a given load."""
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(raw: bytes, headers: dict[str, str]) -> None:
            nonlocal failures
            failures += not await timed_post(session, url, raw, headers, latencies)

        started = time.perf_counter()
        tasks = []
        for index, (raw, headers) in enumerate(requests):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(raw, headers)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return summarise(latencies, elapsed, failures)


WRK_SCRIPT = """
local requests = dofile(os.getenv("WABAPLANE_BENCH_REQUESTS"))
local index = 0
request = function()
  index = index + 1
  local item = requests[(index - 1) % #requests + 1]
  return wrk.format("POST", "/webhook", {["Content-Type"] = "application/json",
                    ["X-Hub-Signature-256"] = item[2]}, item[1])
end
done = function(summary, latency, requests)
  io.stderr:write(string.format("WRK %d %d %d %f %f\\n", summary.requests, summary.errors.status
    + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_closed_loop(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int, seconds: int,
                    workdir: Path) -> dict[str, float]:  # fmt: skip
    """wrk (C, one thread) drives the load, so the generator is never the bottleneck."""
    table = workdir / "requests.lua"
    with table.open("w") as out:
        out.write("return {\n")
        for raw, headers in requests:
            out.write(f'{{[==[{raw.decode()}]==], "{headers["X-Hub-Signature-256"]}"}},\n')
        out.write("}\n")
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    result = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url],
                            env={**os.environ, "WABAPLANE_BENCH_REQUESTS": str(table)}, capture_output=True,
                            text=True, check=True)  # fmt: skip
    line = next(line for line in result.stderr.splitlines() if line.startswith("WRK "))
    count, errors, micros, p50, p99 = (float(x) for x in line.split()[1:])
    return {"requests": count, "failures": errors, "per_second": count / (micros / 1e6), "p50_ms": p50 / 1000,
            "p99_ms": p99 / 1000}  # fmt: skip


def summarise(latencies: list[float], elapsed: float, failures: int) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "failures": failures,
        "per_second": len(ordered) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def start(target: str, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, __file__, "serve", target, str(port), *extra], env=env,
                            stdout=subprocess.DEVNULL)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=30000, help="Distinct signed requests prepared per run."
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=8, help="Duration of each wrk run.")
    parser.add_argument(
        "--python-client", action="store_true", help="Use the Python load generator, not wrk."
    )
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="wabaplane-bench-"))
    os.chmod(workdir, 0o755)  # noqa: S103 - PostgreSQL runs as its own user and must reach its directory
    results: dict[str, dict[str, float]] = {}
    postgres = None
    try:
        warmup = signed_requests(300, 10_000_000)
        for number, target in enumerate(options.targets):
            extra: list[str] = []
            helpers: list[subprocess.Popen[bytes]] = []
            if target == "gateway-sqlite":
                extra = [f"sqlite:///{workdir / 'gateway.db'}"]
            elif target == "gateway-postgres":
                from tests.services import PostgresServer

                postgres = PostgresServer(workdir / "postgres", free_port())
                postgres.start()
                extra = [postgres.create_database("bench")]
            elif target == "naive-flask":
                sink = free_port()
                helpers.append(start("bare-aiohttp", sink, []))
                database = str(workdir / "naive.db")
                with sqlite3.connect(database) as db:
                    db.execute("CREATE TABLE tenants (phone_number_id TEXT PRIMARY KEY, url TEXT)")
                    db.executemany("INSERT INTO tenants VALUES (?, ?)",
                                   [(phone(i), f"http://127.0.0.1:{sink}/hooks") for i in range(TENANTS)])  # fmt: skip
                extra = [database]
            port = free_port()
            server = start(target, port, extra)
            url = f"http://127.0.0.1:{port}"
            try:
                asyncio.run(_wait_ready(url))
                asyncio.run(closed_loop(url, warmup, options.concurrency))
                load = signed_requests(options.requests, number * 1_000_000)
                print(f"{target}: closed loop at concurrency {options.concurrency} ...", file=sys.stderr)
                if options.python_client or shutil.which("wrk") is None:
                    results[target] = asyncio.run(closed_loop(url, load, options.concurrency))
                else:
                    results[target] = wrk_closed_loop(
                        url, load, options.concurrency, options.seconds, workdir
                    )
                if target.startswith("gateway"):
                    half = results[target]["per_second"] / 2
                    paced = signed_requests(int(half * 5), number * 1_000_000 + 500_000)
                    print(f"{target}: open loop at {half:.0f}/s ...", file=sys.stderr)
                    results[target + " @ half load"] = asyncio.run(open_loop(url, paced, half))
            finally:
                for process in [server, *helpers]:
                    process.terminate()
                    process.wait(timeout=20)
            if target == "gateway-postgres" and postgres is not None:
                postgres.stop()
                postgres = None
    finally:
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, options)


def report(results: dict[str, dict[str, float]], options: argparse.Namespace) -> None:
    bare = results.get("bare-aiohttp", {}).get("per_second")
    naive = results.get("naive-flask", {}).get("per_second")
    print("\n| target | webhooks/s | p50 ms | p99 ms | failures | vs bare aiohttp | vs naive Flask |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in results.items():
        ratio_bare = f"{row['per_second'] / bare:.2f}" if bare else "-"
        ratio_naive = f"{row['per_second'] / naive:.1f}x" if naive else "-"
        print(f"| {name} | {row['per_second']:.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
              f"{row['failures']:.0f} | {ratio_bare} | {ratio_naive} |")  # fmt: skip
    generator = (
        "Python aiohttp"
        if options.python_client or shutil.which("wrk") is None
        else f"wrk, {options.seconds} s"
    )
    print(
        f"\nclosed loop: {generator}, concurrency {options.concurrency}; open loop: Python, 5 s; {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        kind, port_text, *rest = sys.argv[2:]
        if kind.startswith("gateway"):
            serve_gateway(int(port_text), rest[0])
        elif kind == "bare-aiohttp":
            serve_bare(int(port_text))
        else:
            serve_flask(int(port_text), rest[0], "")
    else:
        main()
