"""`wabaplane emulator --seed examples/emulator-seed.yaml` runs, and the README's curl calls work."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import emulator_process

REPO = Path(__file__).resolve().parents[2]
WABAPLANE = str(Path(sys.executable).parent / "wabaplane")
TOKEN = "EAAexample-replace-with-a-system-user-token"


@pytest.fixture
def emulator_url() -> Iterator[str]:
    with emulator_process("--seed", str(REPO / "examples" / "emulator-seed.yaml")) as running:
        yield running.url
    assert "Embedded Signup code from the seed: AQ" in running.stderr


def test_seeded_emulator_serves_the_readme_calls(emulator_url: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    numbers = httpx.get(f"{emulator_url}/v25.0/102290129340398/phone_numbers", headers=headers).json()["data"]
    assert {n["id"] for n in numbers} == {"106540352242922", "106540352242923"}
    registered = httpx.post(f"{emulator_url}/v25.0/106540352242922/register", headers=headers,
                            json={"messaging_product": "whatsapp", "pin": "246810"})  # fmt: skip
    assert registered.json() == {"success": True}
    inbound = httpx.post(f"{emulator_url}/_emulator/inbound",
                         json={"phone_number_id": "106540352242922", "from": "15551234567", "text": "Hi!"})  # fmt: skip
    assert inbound.json()["id"].startswith("wamid.")
    sent = httpx.post(f"{emulator_url}/v25.0/106540352242922/messages", headers=headers, json={
        "messaging_product": "whatsapp", "to": "15551234567", "type": "text", "text": {"body": "Hello!"}})  # fmt: skip
    assert sent.status_code == 200
    assert sent.json()["contacts"] == [{"input": "15551234567", "wa_id": "15551234567"}]
    other = httpx.get(f"{emulator_url}/v25.0/103344556677889/phone_numbers", headers=headers)
    assert other.status_code == 403
    assert other.json()["error"]["code"] == 200


def test_a_bad_seed_file_is_refused_clearly(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        "businesses:\n  - name: Acme\n    wabas: [{name: W, phone_numbers: [{verified_name: X}]}]\n"
    )
    result = subprocess.run(
        [WABAPLANE, "emulator", "--seed", str(seed)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "invalid seed file" in result.stderr
    assert "display_phone_number" in result.stderr
