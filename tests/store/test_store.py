"""The store on both backends (SQLite file, real PostgreSQL): dedupe, outbox leases, tenant scoping."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator

import pytest

from wabaplane.store import (
    MessageRecord,
    NewUnit,
    StatusRecord,
    Store,
    StoreConfigError,
    driver_url,
    messagelog,
)
from wabaplane.store.migrations import MIGRATIONS, migrate
from wabaplane.store.tables import schema_migrations


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(store_url: str, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await Store.open(store_url, clock)
    yield opened
    await opened.close()


def unit(key: str, tenant: str | None = "acme", namespace: str = "team-a", targets: tuple[str, ...] = ("tenant",),
         reason: str | None = None) -> NewUnit:  # fmt: skip
    return NewUnit(
        dedupe_key=key,
        field="messages",
        entry_id="102290129340398",
        entry_time=None,
        value=json.dumps({"messages": [{"id": key}]}),
        namespace=namespace if tenant else None,
        tenant=tenant,
        unroutable_reason=reason,
        targets=targets if tenant else (),  # type: ignore[arg-type]
    )


def test_store_urls_name_the_driver_and_refuse_unknown_schemes() -> None:
    assert (
        driver_url("sqlite:///var/lib/wabaplane/gateway.db")
        == "sqlite+pysqlite:///var/lib/wabaplane/gateway.db"
    )
    assert driver_url("postgresql://u:p@db/wp") == "postgresql+asyncpg://u:p@db/wp"
    with pytest.raises(StoreConfigError, match="unsupported store URL scheme 'mysql'"):
        driver_url("mysql://db/wp")


async def test_migrations_run_once_and_are_recorded(store: Store) -> None:
    assert await store.run(migrate) == []
    versions = await store.run(
        lambda connection: list(connection.execute(schema_migrations.select()).mappings())
    )
    assert [row["version"] for row in versions] == [m.version for m in MIGRATIONS]


async def test_ingest_stores_each_key_once_across_requests_and_within_one(store: Store) -> None:
    first = await store.ingest([unit("wamid.1"), unit("wamid.2"), unit("wamid.1")])
    assert (first.stored, first.duplicates, first.deliveries) == (2, 1, 2)
    again = await store.ingest([unit("wamid.2"), unit("wamid.3")])
    assert (again.stored, again.duplicates) == (1, 1)
    assert again.new_keys == {"wamid.3"}
    listed = await store.list_deliveries("team-a", "acme")
    assert sorted(json.loads(d.value)["messages"][0]["id"] for d in listed) == [
        "wamid.1",
        "wamid.2",
        "wamid.3",
    ]


async def test_unroutable_units_are_kept_with_their_reason_and_never_queued(store: Store) -> None:
    await store.ingest([unit("orphan", tenant=None, reason="no Ready PhoneNumber for 999")])
    assert await store.due_groups() == {}
    [kept] = await store.unroutable()
    assert kept.reason == "no Ready PhoneNumber for 999"
    assert (await store.stats()).unroutable == 1


async def test_one_unit_can_go_to_the_tenant_and_the_operator(store: Store) -> None:
    await store.ingest([unit("tpl", targets=("tenant", "operator"))])
    assert await store.due_groups() == {("tenant", "team-a", "acme"): 1, ("operator", "team-a", "acme"): 1}


async def test_a_claim_is_leased_until_it_ends_then_comes_back(store: Store, clock: FakeClock) -> None:
    await store.ingest([unit("a"), unit("b")])
    claimed = await store.claim("tenant", "team-a", "acme", 10, lease_seconds=60)
    assert len(claimed) == 2
    assert await store.claim("tenant", "team-a", "acme", 10, lease_seconds=60) == []
    clock.now += 61
    again = await store.claim("tenant", "team-a", "acme", 10, lease_seconds=60)
    assert sorted(d.id for d in again) == sorted(d.id for d in claimed)


async def test_concurrent_claims_never_share_a_delivery(store_url: str, clock: FakeClock) -> None:
    stores = [await Store.open(store_url, clock) for _ in range(3)]
    try:
        await stores[0].ingest([unit(f"m{i}") for i in range(60)])
        rounds = await asyncio.gather(
            *(s.claim("tenant", "team-a", "acme", 7, 60) for s in stores for _ in range(4))
        )
        ids = [d.id for claimed in rounds for d in claimed]
        assert len(ids) == len(set(ids))
        assert len(ids) == 60
    finally:
        for opened in stores:
            await opened.close()


async def test_failures_reschedule_then_dead_letter_and_replay_restarts(
    store: Store, clock: FakeClock
) -> None:
    await store.ingest([unit("x")])
    [claimed] = await store.claim("tenant", "team-a", "acme", 1, 60)
    await store.mark_failed(claimed.seq, 503, "the endpoint answered HTTP 503", clock.now + 30)
    assert await store.due_groups() == {}
    clock.now += 30
    [again] = await store.claim("tenant", "team-a", "acme", 1, 60)
    assert again.attempts == 1
    await store.mark_failed(again.seq, None, "ConnectionRefusedError", None)
    [dead] = await store.list_deliveries("team-a", "acme", state="dead")
    assert (dead.attempts, dead.last_error) == (2, "ConnectionRefusedError")
    assert (await store.stats()).dead_by_tenant == {("team-a", "acme"): 1}
    assert await store.replay("team-a", "acme", ids=[dead.id]) == 1
    [replayed] = await store.claim("tenant", "team-a", "acme", 1, 60)
    assert (replayed.id, replayed.attempts) == (dead.id, 0)
    await store.mark_delivered(replayed.seq, 200)
    assert (await store.get_delivery("team-a", "acme", dead.id)).state == "delivered"  # type: ignore[union-attr]


async def test_tenant_views_never_show_another_tenants_deliveries(store: Store) -> None:
    await store.ingest([unit("a1"), unit("b1", tenant="globex", namespace="team-b")])
    [mine] = await store.list_deliveries("team-a", "acme")
    [theirs] = await store.list_deliveries("team-b", "globex")
    assert await store.get_delivery("team-a", "acme", theirs.id) is None
    assert await store.get_delivery("team-a", "globex", theirs.id) is None
    await store.mark_failed(theirs.seq, None, "down", None)
    assert await store.replay("team-a", "acme", ids=[theirs.id]) == 0
    assert await store.replay("team-a", "acme", since=0) == 0
    assert (await store.get_delivery("team-a", "acme", mine.id)) is not None


async def test_pages_follow_the_cursor(store: Store) -> None:
    await store.ingest([unit(f"p{i}") for i in range(5)])
    first = await store.list_deliveries("team-a", "acme", limit=2)
    second = await store.list_deliveries("team-a", "acme", limit=2, after=first[-1].seq)
    rest = await store.list_deliveries("team-a", "acme", limit=2, after=second[-1].seq)
    assert [len(first), len(second), len(rest)] == [2, 2, 1]
    assert len({d.id for d in first + second + rest}) == 5


async def test_purge_keeps_dedupe_keys_for_the_retention_and_never_drops_pending(
    store: Store, clock: FakeClock
) -> None:
    await store.ingest([unit("old-delivered"), unit("old-pending")])
    claimed = {
        json.loads(d.value)["messages"][0]["id"]: d
        for d in await store.claim("tenant", "team-a", "acme", 5, 60)
    }
    await store.mark_delivered(claimed["old-delivered"].seq, 200)
    await store.release(claimed["old-pending"].seq, clock.now + 10**7)
    clock.now += 7 * 86400
    assert await store.purge(retention_seconds=8 * 86400, dead_retention_seconds=30 * 86400) == 0
    assert (await store.ingest([unit("old-delivered")])).duplicates == 1
    clock.now += 2 * 86400
    assert await store.purge(retention_seconds=8 * 86400, dead_retention_seconds=30 * 86400) == 1
    assert (await store.ingest([unit("old-delivered")])).stored == 1
    assert (await store.stats()).pending == 2


async def test_disabled_endpoints_are_remembered_until_enabled(store: Store) -> None:
    await store.disable_endpoint("team-a", "acme", "https://hooks.acme.example/wa", "410 Gone")
    await store.disable_endpoint("team-a", "acme", "https://hooks.acme.example/wa", "410 Gone")
    assert await store.disabled_endpoints() == {
        ("team-a", "acme", "https://hooks.acme.example/wa"): "410 Gone"
    }
    assert await store.enable_endpoint("team-a", "acme") == 1
    assert await store.disabled_endpoints() == {}


async def test_idempotency_keys_are_remembered_for_their_ttl_then_forgotten(
    store: Store, clock: FakeClock
) -> None:
    assert await store.remember_key("team-a", "acme", "k1", "hash-1") is None
    await store.settle_key("team-a", "acme", "k1", 200, '{"ok": true}')
    remembered = await store.remember_key("team-a", "acme", "k1", "hash-1")
    assert remembered is not None
    assert (remembered.status, remembered.response) == (200, '{"ok": true}')
    assert await store.remember_key("team-b", "acme", "k1", "hash-1") is None, "keys are per tenant"
    clock.now += 86401
    assert (
        await store.purge_message_log(message_retention_seconds=400 * 86400, idempotency_seconds=86400) == 2
    )
    assert await store.remember_key("team-a", "acme", "k1", "hash-2") is None


async def test_a_status_never_moves_backwards(store: Store, clock: FakeClock) -> None:
    record = MessageRecord(id="wamid.S", namespace="team-a", tenant="acme", phone_number_id="1", customer="2",
                           direction="outbound", type="text", body="{}", status="accepted")  # fmt: skip
    assert await store.log_message(record)
    assert not await store.log_message(record), "logged once"

    async def apply(status: str, tenant: str = "acme") -> None:
        entry = StatusRecord("wamid.S", "team-a", tenant, status)
        await store.run(functools.partial(messagelog.apply_status, record=entry, now=clock.now))

    async def status() -> str | None:
        found = await store.message("team-a", "acme", "wamid.S")
        return found.status if found is not None else None

    for arriving in ("read", "delivered", "sent"):
        await apply(arriving)
    assert await status() == "read"
    await apply("failed", tenant="globex")
    assert await status() == "read", "another tenant's status is ignored"
    await apply("failed")
    assert await status() == "failed"


def outbound(message_id: str, customer: str, tenant: str = "acme", business_initiated: bool = True,
             at: float | None = None) -> MessageRecord:  # fmt: skip
    phone = "106" if tenant == "acme" else "107"  # each tenant's own number
    return MessageRecord(id=message_id, namespace="team-a", tenant=tenant, phone_number_id=phone, customer=customer,
                         direction="outbound", type="template", body="{}", status="accepted",
                         business_initiated=business_initiated, at=at)  # fmt: skip


async def context(store: Store, clock: FakeClock, customer: str = "15550000001", tenant: str = "acme",
                  count_reach: bool = True) -> messagelog.SendContext:  # fmt: skip
    return await store.send_context(conversation="c", namespace="team-a", tenant=tenant, phone_number_id="106",
                                    customer=customer, now=clock.now, reach_since=clock.now - 86400,
                                    count_reach=count_reach)  # fmt: skip


async def test_the_send_context_counts_the_month_and_the_reach(store: Store, clock: FakeClock) -> None:
    empty = await context(store, clock)
    assert empty == messagelog.SendContext(
        last_inbound=None, sent_this_month=0, customer_reached=False, reached=0
    )
    # Concurrent logs share a commit, and every one of them is counted.
    logged = await asyncio.gather(
        *(store.log_message(outbound(f"wamid.{i}", f"1555000{i:04d}")) for i in range(30))
    )
    assert all(logged)
    assert not await store.log_message(outbound("wamid.0", "15550000000")), "a message is counted once"
    await store.log_message(outbound("wamid.service", "15550000000", business_initiated=False))
    await store.log_message(outbound("wamid.other", "15559999999", tenant="globex"))
    known = await context(store, clock, customer="15550000003")
    assert known.sent_this_month == 31
    assert known.customer_reached is True
    assert known.reached is None, "a customer already reached needs no count"
    stranger = await context(store, clock, customer="15551111111")
    assert (stranger.customer_reached, stranger.reached) == (False, 30)
    assert (await context(store, clock, tenant="globex")).sent_this_month == 1
    assert (await context(store, clock, count_reach=False, customer="15551111111")).reached is None
    # A day later the reach is forgotten; the month's count is not.
    clock.now += 86400 + 1
    later = await context(store, clock, customer="15551111111")
    assert (later.reached, later.sent_this_month) == (0, 31)


async def test_a_new_month_counts_from_zero_and_a_counter_missing_is_rebuilt_from_the_log(
    store: Store, clock: FakeClock
) -> None:
    from wabaplane.store.tables import monthly_sends

    for i in range(3):
        await store.log_message(outbound(f"wamid.{i}", f"1555{i}"))
    # A store from before the counters (or a lost row): the next send counts the log once.
    await store.run(lambda connection: connection.execute(monthly_sends.delete()))
    assert (await context(store, clock)).sent_this_month == 3
    await store.log_message(outbound("wamid.3", "15553"))
    assert (await context(store, clock)).sent_this_month == 4
    clock.now += 40 * 86400
    assert (await context(store, clock)).sent_this_month == 0
    await store.log_message(outbound("wamid.next-month", "15554", at=clock.now))
    assert (await context(store, clock)).sent_this_month == 1
