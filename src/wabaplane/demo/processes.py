"""The demo's child processes (emulator, operator, gateway): started with logs to files, stopped for sure."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from wabaplane.demo.kubectl import DemoError

TAIL_LINES = 30


def wabaplane_command() -> str:
    beside = Path(sys.executable).parent / "wabaplane"
    return str(beside) if beside.exists() else "wabaplane"


@dataclass
class ManagedProcess:
    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            # Its own process group, so a Ctrl-C in the terminal reaches the demo only, which then
            # stops the children in order (the operator last: it removes the finalizers).
            start_new_session=True,
        )

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise DemoError(
                f"the {self.name} exited with code {self.process.returncode}; the end of its log "
                f"({self.log_path}):\n{self.tail()}"
            )

    def tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-TAIL_LINES:])

    def stop(self, grace_seconds: float = 15) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    what: str,
    within: float,
    watched: list[ManagedProcess] | None = None,
    interval: float = 0.2,
) -> None:
    """Poll a condition; fail with `what` on timeout, or at once when a watched process has died."""
    deadline = time.monotonic() + within
    while True:
        for process in watched or []:
            process.check_alive()
        if await condition():
            return
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False
