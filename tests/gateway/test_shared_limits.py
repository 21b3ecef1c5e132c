"""Send limits shared by replicas through a real Redis, and the fallback when Redis goes away."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.gateway.conftest import make_view, number_obj, tenant_obj
from tests.services import RedisServer
from tests.store.test_store import FakeClock
from wabaplane.gateway.limits import Limits
from wabaplane.gateway.routing import NumberInfo, TenantInfo
from wabaplane.gateway.shared_limits import SharedLimits

PHONE = "106540352242922"


def tenant_and_number(messages_per_second: int, burst: int) -> tuple[TenantInfo, NumberInfo]:
    view = make_view([tenant_obj("team-a", "acme", "102290129340398", None,
                                 quotas={"messagesPerSecond": messages_per_second, "burst": burst})],
                     [number_obj("team-a", "support", "acme", PHONE, "15550100001")], [])  # fmt: skip
    return view.snapshot.tenants[("team-a", "acme")], view.snapshot.numbers[("team-a", "support")]


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[list[SharedLimits]]:
    pair = [SharedLimits(redis_server.url, replicas=2), SharedLimits(redis_server.url, replicas=2)]
    yield pair
    for limits in pair:
        await limits.close()


async def test_two_replicas_admit_together_what_one_would(replicas: list[SharedLimits]) -> None:
    tenant, number = tenant_and_number(messages_per_second=2, burst=6)
    clock = FakeClock()
    admitted = [
        await replicas[i % 2].check(tenant, number, f"1555000{i:04d}", clock.now) is None for i in range(10)
    ]
    assert admitted.count(True) == 6, "the tenant's burst of 6, shared"
    refusal = await replicas[0].check(tenant, number, "15559999999", clock.now)
    assert refusal is not None
    assert (refusal.reason, refusal.code) == ("tenant_quota", 4290001)
    clock.now += 0.5
    assert await replicas[1].check(tenant, number, "15559999998", clock.now) is None, "one token per 0.5 s"


async def test_meta_limits_are_shared_too(replicas: list[SharedLimits]) -> None:
    tenant, number = tenant_and_number(messages_per_second=1000, burst=1000)
    clock = FakeClock()
    pair = [await replicas[i % 2].check(tenant, number, "15551234567", clock.now) for i in range(46)]
    assert [r is None for r in pair].count(True) == 45
    assert pair[-1] is not None
    assert pair[-1].code == 131056
    clock.now += 10
    spread = [await replicas[i % 2].check(tenant, number, f"1444{i:07d}", clock.now) for i in range(81)]
    assert [r is None for r in spread].count(True) == 80
    assert spread[-1] is not None
    assert spread[-1].code == 130429


async def test_without_redis_each_replica_keeps_to_its_share_at_once(
    replicas: list[SharedLimits], redis_server: RedisServer
) -> None:
    tenant, number = tenant_and_number(messages_per_second=1000, burst=1000)
    clock = FakeClock()
    redis_server.stop()
    spread = [await replicas[i % 2].check(tenant, number, f"1444{i:07d}", clock.now) for i in range(100)]
    assert [r is None for r in spread].count(True) == 80, "40 per replica: Meta's 80 together, never more"
    assert {r.code for r in spread if r is not None} == {130429}
    assert replicas[0].down_until == clock.now + 1.0, "Redis is tried again a second later"


def test_a_local_share_scales_every_limit() -> None:
    tenant, number = tenant_and_number(messages_per_second=10, burst=20)
    half = Limits(share=0.5)
    admitted = [half.check(tenant, number, f"1555{i:07d}", 0.0) is None for i in range(30)]
    assert admitted.count(True) == 10
