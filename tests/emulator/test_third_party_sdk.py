"""A third-party WhatsApp Cloud API SDK (pywa, from PyPI) works against the emulator unchanged.

pywa is synchronous and hard-codes Meta's host; the only change is a transport that sends its
requests to the emulator instead, which is what "apart from the base URL" means for this SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pywa.client import WhatsApp
from pywa.handlers import MessageHandler, MessageStatusHandler
from pywa.types.message import Message
from pywa.types.message_status import MessageStatus

from tests.conftest import RedirectTransport, eventually
from tests.emulator.conftest import (
    ACME_SUPPORT,
    ACME_TOKEN,
    APP_SECRET,
    CUSTOMER,
    VERIFY_TOKEN,
    Harness,
)


@pytest.fixture
def pywa_client(harness: Harness) -> Iterator[Callable[[], WhatsApp]]:
    sessions: list[httpx.Client] = []

    def make() -> WhatsApp:
        session = httpx.Client(transport=RedirectTransport(harness.base_url))
        sessions.append(session)
        return _whatsapp(session)

    yield make
    for session in sessions:
        session.close()


def _whatsapp(session: httpx.Client) -> WhatsApp:
    return WhatsApp(
        phone_id=ACME_SUPPORT,
        token=ACME_TOKEN,
        session=session,
        app_secret=APP_SECRET,
        verify_token=VERIFY_TOKEN,
        validate_updates=True,
    )


async def test_pywa_sends_through_the_emulator(harness: Harness, pywa_client: Callable[[], WhatsApp]) -> None:
    await harness.control(
        "POST", "inbound", {"phone_number_id": ACME_SUPPORT, "from": CUSTOMER, "text": "hi"}
    )
    wa = pywa_client()
    sent = await asyncio.to_thread(wa.send_message, to=CUSTOMER, text="Hello from pywa")
    assert sent.id.startswith("wamid.")
    stored = harness.emulator.world.messages[sent.id]
    assert stored.body["text"]["body"] == "Hello from pywa"
    assert stored.wa_id == CUSTOMER


async def test_pywa_surfaces_emulator_errors_by_code(
    harness: Harness, pywa_client: Callable[[], WhatsApp]
) -> None:
    from pywa.errors import WhatsAppError

    harness.emulator.settings.window_error_mode = "sync"
    wa = pywa_client()
    with pytest.raises(WhatsAppError) as raised:
        await asyncio.to_thread(wa.send_message, to="15550002222", text="outside the window")
    assert type(raised.value).__name__ == "ReEngagementMessage"  # pywa maps 131047 to its own class
    assert raised.value.code == 131047


async def test_pywa_parses_and_verifies_emulator_webhooks(
    harness: Harness, receivers: Any, pywa_client: Callable[[], WhatsApp]
) -> None:
    # pywa reads only the first change of a POST, so this test lets each change travel alone
    # (Meta batches only sometimes; the batching itself is tested in test_webhooks.py).
    harness.emulator.settings.webhook_batch_window = 0.0
    harness.emulator.settings.status_delays = (0.05, 0.1, 0.15)
    receiver = await receivers()
    response = await harness.control("POST", "callback", {"url": receiver.url, "verify_token": VERIFY_TOKEN})
    assert response.status_code == 200
    wa = pywa_client()
    messages: list[Message] = []
    statuses: list[MessageStatus[Any]] = []
    wa.add_handlers(
        MessageHandler(lambda _, message: messages.append(message)),
        MessageStatusHandler(lambda _, status: statuses.append(status)),
    )
    await harness.control("POST", "inbound", {"phone_number_id": ACME_SUPPORT, "from": CUSTOMER, "name": "Zoë",
                                              "text": "Olá, tudo bem? ✓"})  # fmt: skip
    sent = await asyncio.to_thread(wa.send_message, to=CUSTOMER, text="reply")
    await eventually(lambda: len(receiver.changes("messages")) >= 4, what="the message and three statuses")
    assert all(len(payload["entry"][0]["changes"]) == 1 for payload in receiver.json())
    for post in receiver.posts:
        assert wa.webhook_update_validator(post.body, post.headers["X-Hub-Signature-256"]) is None
        assert wa.webhook_update_handler(post.body) == ("ok", 200)
    await eventually(lambda: messages and len(statuses) >= 3, what="pywa's handlers")
    assert messages[0].text == "Olá, tudo bem? ✓"
    assert messages[0].from_user.wa_id == CUSTOMER
    assert messages[0].from_user.name == "Zoë"
    assert {status.id for status in statuses} == {sent.id}
    assert {str(status.status.value).lower() for status in statuses} == {"sent", "delivered", "read"}
    tampered = receiver.posts[0].body.replace(b"tudo", b"TUDO")
    assert wa.webhook_update_validator(tampered, receiver.posts[0].headers["X-Hub-Signature-256"]) is not None
