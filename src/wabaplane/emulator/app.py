"""The emulator as an aiohttp application: `create_app(settings, seed)` and `run`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from wabaplane.emulator import control
from wabaplane.emulator import seed as seed_module
from wabaplane.emulator.config import EmulatorSettings
from wabaplane.emulator.engine import Emulator
from wabaplane.emulator.graph import EMULATOR_KEY, FAULTS_KEY, graph_handler


def create_app(settings: EmulatorSettings, seed: seed_module.Seed | None = None) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    emulator = Emulator(settings)
    if seed is not None:
        seed_module.apply(emulator, seed)
    app[EMULATOR_KEY] = emulator
    app[FAULTS_KEY] = []

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await emulator.start()
        yield
        await emulator.close()

    app.cleanup_ctx.append(lifecycle)
    # The control API first: its paths must never fall through to the Graph catch-all.
    app.add_routes(control.routes)
    app.router.add_route("*", "/{path:.*}", graph_handler)
    return app
