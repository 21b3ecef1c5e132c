"""Typed application state (aiohttp AppKeys)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp import web

from wabaplane.gateway.cluster import ClusterView
from wabaplane.gateway.delivery import Deliverer
from wabaplane.gateway.limits import Limits
from wabaplane.gateway.metrics import GatewayMetrics
from wabaplane.gateway.settings import GatewaySettings
from wabaplane.gateway.shared_limits import SharedLimits
from wabaplane.store import Store

SETTINGS = web.AppKey("settings", GatewaySettings)
VIEW = web.AppKey("view", ClusterView)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", GatewayMetrics)
DELIVERER = web.AppKey("deliverer", Deliverer)
Clock = Callable[[], float]
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
LIMITS: web.AppKey[Limits | SharedLimits] = web.AppKey("limits")
GRAPH = web.AppKey("graph", aiohttp.ClientSession)
SEND_SLOTS: web.AppKey[dict[tuple[str, str], asyncio.Semaphore]] = web.AppKey("send_slots")
