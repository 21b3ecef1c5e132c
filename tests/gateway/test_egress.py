"""Outbound safety: the SSRF guard, no redirects, and the circuit breaker."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp import web

from tests.conftest import eventually
from tests.gateway.conftest import GatewayFactory, Hit, Receivers, envelope, text_message
from tests.gateway.test_delivery import ACME_PHONE, ACME_WABA, two_tenants
from wabaplane.gateway.delivery import Breaker
from wabaplane.gateway.ssrf import DestinationRefused, EgressPolicy, GuardedResolver


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),  # noqa: S104 - an address under test, not a bind
        ("198.18.0.1", False),
        ("240.0.0.1", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:10.0.0.1", False),
        ("2001:db8::1", False),  # documentation
    ],
)
def test_only_public_addresses_are_reachable_by_default(address: str, allowed: bool) -> None:
    assert EgressPolicy().address_allowed(ipaddress.ip_address(address)) is allowed


def test_an_allowed_cidr_opens_exactly_that_range() -> None:
    policy = EgressPolicy.from_strings(["127.0.0.0/8"])
    assert policy.address_allowed(ipaddress.ip_address("127.0.0.5"))
    assert policy.address_allowed(ipaddress.ip_address("::ffff:127.0.0.5"))
    assert not policy.address_allowed(ipaddress.ip_address("10.0.0.1"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example.com/wa", "the URL scheme must be https, got 'http'"),
        ("ftp://hooks.example.com/wa", "the URL scheme must be https"),
        ("https:///nohost", "the URL has no host"),
        ("https://127.0.0.1/wa", "the address 127.0.0.1 is not public"),
        ("https://[::1]:8443/wa", "the address ::1 is not public"),
        ("https://169.254.169.254/latest/meta-data", "the address 169.254.169.254 is not public"),
    ],
)
def test_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(DestinationRefused) as refused:
        EgressPolicy().check_url(url)
    assert message in str(refused.value)


def test_public_https_urls_pass_and_http_needs_the_switch() -> None:
    EgressPolicy().check_url("https://hooks.example.com/wa")
    EgressPolicy(allow_http=True).check_url("http://hooks.example.com/wa")


async def test_the_resolver_drops_addresses_the_policy_refuses() -> None:
    guarded = GuardedResolver(EgressPolicy())
    try:
        with pytest.raises(OSError, match="resolves only to addresses that are not public"):
            await guarded.resolve("localhost", 443)
    finally:
        await guarded.close()
    open_to_loopback = GuardedResolver(EgressPolicy.from_strings(["127.0.0.0/8"]))
    try:
        resolved = await open_to_loopback.resolve("localhost", 443)
        assert {r["host"] for r in resolved} == {"127.0.0.1"}
    finally:
        await open_to_loopback.close()


async def test_a_tenant_url_on_the_platforms_network_is_never_called(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    acme, globex = await receivers(), await receivers()
    # The receiver listens on loopback, but this gateway allows no private range.
    gateway = await gateway_factory(two_tenants(acme.url.replace("127.0.0.1", "localhost"), globex.url),
                                    allowed_cidrs=())  # fmt: skip
    await gateway.post_webhook(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.ssrf")))

    async def refused() -> bool:
        found = await gateway.store.list_deliveries("team-a", "acme")
        return bool(found) and found[0].attempts >= 1

    await eventually(refused, what="the refused attempt")
    [delivery] = await gateway.store.list_deliveries("team-a", "acme")
    assert "resolves only to addresses that are not public" in (delivery.last_error or "")
    assert acme.hits == []


async def test_redirects_are_not_followed(gateway_factory: GatewayFactory, receivers: Receivers) -> None:
    acme, globex, elsewhere = await receivers(), await receivers(), await receivers()

    async def redirect(_: Hit) -> web.Response:
        return web.Response(status=307, headers={"Location": elsewhere.url})

    acme.respond = redirect
    gateway = await gateway_factory(two_tenants(acme.url, globex.url), retry_schedule=(60.0,))
    await gateway.post_webhook(envelope(text_message(ACME_PHONE, ACME_WABA, "wamid.redirect")))
    await eventually(lambda: acme.hits, what="the attempt")

    async def failed() -> bool:
        found = await gateway.store.list_deliveries("team-a", "acme")
        return found[0].attempts == 1

    await eventually(failed, what="the attempt recorded as failed")
    [delivery] = await gateway.store.list_deliveries("team-a", "acme")
    assert (delivery.state, delivery.last_status) == ("pending", 307)
    assert elsewhere.hits == []


def test_the_breaker_opens_after_the_threshold_then_lets_one_probe_through() -> None:
    breaker = Breaker(threshold=3, cooldown=30, max_cooldown=120)
    for _ in range(2):
        breaker.failure(now=0)
    assert breaker.capacity(10, now=0) == 10
    breaker.failure(now=0)
    assert breaker.capacity(10, now=29) == 0
    assert breaker.capacity(10, now=30) == 1
    breaker.failure(now=30)
    assert breaker.capacity(10, now=89) == 0, "the cooldown doubles"
    assert breaker.capacity(10, now=90) == 1
    breaker.success()
    assert breaker.capacity(10, now=90) == 10


async def test_an_open_circuit_stops_attempts_to_that_endpoint_only(
    gateway_factory: GatewayFactory, receivers: Receivers
) -> None:
    acme, globex = await receivers(), await receivers()

    async def broken(_: Hit) -> web.Response:
        return web.Response(status=500)

    acme.respond = broken
    gateway = await gateway_factory(two_tenants(acme.url, globex.url), breaker_failures=3, breaker_cooldown=3600.0,
                                    retry_schedule=(0.01,) * 100)  # fmt: skip
    await gateway.post_webhook(
        envelope(*[text_message(ACME_PHONE, ACME_WABA, f"wamid.cb{i}") for i in range(5)])
    )
    await eventually(lambda: len(acme.hits) >= 3, what="three failures")

    async def circuit_open() -> bool:
        return (
            'wabaplane_gateway_circuit_open{tenant="team-a/acme"} 1.0'
            in (await gateway.client.get("/metrics")).text
        )

    await eventually(circuit_open, what="the circuit to open")
    attempts = len(acme.hits)
    await gateway.post_webhook(envelope(text_message("107788990011223", "103344556677889", "wamid.other")))
    await eventually(lambda: globex.ids() == ["wamid.other"], what="the other tenant's delivery")
    assert len(acme.hits) == attempts, "no attempt reaches an endpoint whose circuit is open"
    assert (await gateway.store.stats()).pending == 5
