"""Two tiny tenant webhook endpoints on loopback, standing in for the client businesses' servers.

Each checks the gateway's X-Hub-Signature-256 with its tenant's webhook secret (read from the Secret
the operator created) and records what it received, so the demo can show who got what.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from wabaplane.gateway.signing import verify_hub_signature


@dataclass
class TenantEndpoint:
    tenant: str
    secret: str = ""
    payloads: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0

    def messages(self) -> list[dict[str, Any]]:
        """The customers' messages received, each with the number it was sent to."""
        found = []
        for payload in self.payloads:
            for entry in payload.get("entry", []):
                for change in entry.get("changes", []):
                    value = change.get("value", {})
                    number = value.get("metadata", {}).get("phone_number_id")
                    found += [{**message, "to_number": number} for message in value.get("messages", [])]
        return found

    def statuses(self) -> list[dict[str, Any]]:
        return [
            status
            for payload in self.payloads
            for entry in payload.get("entry", [])
            for change in entry.get("changes", [])
            for status in change.get("value", {}).get("statuses", [])
        ]


@dataclass
class Receivers:
    endpoints: dict[str, TenantEndpoint]
    base_url: str = ""
    runner: web.AppRunner | None = None

    def url(self, tenant: str) -> str:
        return f"{self.base_url}/{tenant}"

    async def start(self, port: int) -> None:
        app = web.Application()
        for tenant in self.endpoints:
            app.router.add_post(f"/{tenant}", self._handler(self.endpoints[tenant]))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @staticmethod
    def _handler(endpoint: TenantEndpoint) -> Callable[[web.Request], Any]:
        async def receive(request: web.Request) -> web.Response:
            body = await request.read()
            signature = request.headers.get("X-Hub-Signature-256")
            if not endpoint.secret or not verify_hub_signature(body, signature, [endpoint.secret]):
                endpoint.bad_signatures += 1
                # 401 makes the gateway retry, as a real endpoint would want until its secret is known.
                return web.Response(status=401, text="bad signature")
            endpoint.payloads.append(json.loads(body))
            return web.Response(text="ok")

        return receive
