"""Webhooks as Meta sends them: batched, signed over escaped-unicode bytes, retried on non-200.

Routing follows Meta's override precedence (reference §1.10): for the fields that overrides cover,
the phone number's override URI, else the WABA's, else the app callback; every other field goes to
the app callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from wabaplane.emulator.config import EmulatorSettings

OVERRIDABLE_FIELDS = frozenset(
    {
        "messages",
        "message_echoes",
        "calls",
        "consumer_profile",
        "messaging_handovers",
        "group_lifecycle_update",
        "group_participants_update",
        "group_settings_update",
        "group_status_update",
        "smb_message_echoes",
        "smb_app_state_sync",
        "history",
        "account_settings_update",
    }
)
# Fields whose payloads carry `metadata` and no entry.time.
MESSAGE_LIKE_FIELDS = frozenset(
    {"messages", "user_preferences", "smb_message_echoes", "message_echoes", "calls"}
)
USER_AGENT = "facebookexternalua"


def serialise(payload: dict[str, Any]) -> bytes:
    """Meta's bytes: non-ASCII escaped as lowercase \\uXXXX, so the body is pure ASCII."""
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def sign(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Change:
    entry_id: str
    field: str
    value: dict[str, Any]
    url: str


@dataclass
class Attempt:
    at: float
    status: int | None
    error: str | None = None


@dataclass
class Delivery:
    id: int
    url: str
    body: bytes
    signature: str
    attempts: list[Attempt] = field(default_factory=list)
    delivered: bool = False
    abandoned: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "payload": json.loads(self.body),
            "signature": self.signature,
            "delivered": self.delivered,
            "abandoned": self.abandoned,
            "attempts": [{"at": a.at, "status": a.status, "error": a.error} for a in self.attempts],
        }


class Dispatcher:
    """Queues changes, batches them per target URL, POSTs them and retries failures."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.pending: list[Change] = []
        self.deliveries: list[Delivery] = []
        self.verified: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None
        self._flush_scheduled = False

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout)
        )

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.session is not None:
            await self.session.close()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def enqueue(self, change: Change) -> None:
        self.pending.append(change)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._spawn(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.settings.webhook_batch_window)
        self._flush_scheduled = False
        changes, self.pending = self.pending, []
        by_url: dict[str, list[Change]] = {}
        for change in changes:
            by_url.setdefault(change.url, []).append(change)
        for url, url_changes in by_url.items():
            for start in range(0, len(url_changes), self.settings.webhook_max_batch):
                batch = url_changes[start : start + self.settings.webhook_max_batch]
                body = serialise(envelope(batch))
                delivery = Delivery(
                    id=len(self.deliveries) + 1,
                    url=url,
                    body=body,
                    signature=sign(body, self.settings.app_secret),
                )
                self.deliveries.append(delivery)
                self._spawn(self._deliver(delivery))

    def redeliver(self, delivery_id: int) -> Delivery | None:
        """Send a delivered webhook again, byte for byte, as Meta does when it is unsure of its 200."""
        original = next((d for d in self.deliveries if d.id == delivery_id), None)
        if original is None:
            return None
        again = Delivery(
            id=len(self.deliveries) + 1, url=original.url, body=original.body, signature=original.signature
        )
        self.deliveries.append(again)
        self._spawn(self._deliver(again))
        return again

    async def _deliver(self, delivery: Delivery) -> None:
        schedule = self.settings.webhook_retry_schedule
        for attempt in range(len(schedule) + 1):
            status, error = await self._post(delivery)
            delivery.attempts.append(Attempt(at=time.time(), status=status, error=error))
            if status == 200:
                delivery.delivered = True
                return
            if attempt < len(schedule):
                await asyncio.sleep(schedule[attempt])
        delivery.abandoned = True

    async def _post(self, delivery: Delivery) -> tuple[int | None, str | None]:
        assert self.session is not None
        try:
            if delivery.url not in self.verified and not await self.verify(
                delivery.url, self.settings.verify_token
            ):
                return None, "verification handshake failed"
            async with self.session.post(
                delivery.url,
                data=delivery.body,
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": delivery.signature,
                    "User-Agent": USER_AGENT,
                },
            ) as response:
                await response.read()
                return response.status, None
        except (aiohttp.ClientError, TimeoutError) as error:
            return None, f"{type(error).__name__}: {error}"

    async def verify(self, url: str, verify_token: str) -> bool:
        """Meta's GET handshake: verified only on a 200 whose body is exactly the challenge."""
        assert self.session is not None
        challenge = str(secrets.randbelow(10**10))
        params = {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token}
        try:
            async with self.session.get(url, params=params, headers={"User-Agent": USER_AGENT}) as response:
                ok = response.status == 200 and (await response.text()) == challenge
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            self.verified.add(url)
        return ok


def envelope(changes: list[Change]) -> dict[str, Any]:
    entries: dict[tuple[str, bool], dict[str, Any]] = {}
    now = int(time.time())
    for change in changes:
        message_like = change.field in MESSAGE_LIKE_FIELDS
        key = (change.entry_id, message_like)
        if key not in entries:
            entry: dict[str, Any] = {"id": change.entry_id, "changes": []}
            if not message_like:
                entry["time"] = now
            entries[key] = entry
        entries[key]["changes"].append({"value": change.value, "field": change.field})
    return {"object": "whatsapp_business_account", "entry": list(entries.values())}
