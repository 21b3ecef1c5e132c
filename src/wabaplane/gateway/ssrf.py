"""Outbound requests to tenant URLs never reach the platform's own network.

Tenant URLs must be https and every address they resolve to must be public; the check runs inside
the resolver the connector uses, so the address checked is the address connected to (no DNS
rebinding window). The platform may allow specific CIDRs (for example a loopback range in tests).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Beyond `is_global`: ranges that are not private in Python's table but must never be reached.
EXTRA_BLOCKED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(net)
    for net in ("100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "0.0.0.0/8", "240.0.0.0/4", "64:ff9b::/96")
)


class DestinationRefused(Exception):
    """The URL or the address it resolves to is not allowed; the message says why."""


@dataclass(frozen=True)
class EgressPolicy:
    allowed_networks: tuple[Network, ...] = ()
    allow_http: bool = False

    @classmethod
    def from_strings(cls, cidrs: Sequence[str], allow_http: bool = False) -> EgressPolicy:
        return cls(tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs), allow_http)

    def address_allowed(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed_networks):
            return True
        if address.is_multicast:
            return False
        return address.is_global and not any(address in network for network in EXTRA_BLOCKED)

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        schemes = {"https", "http"} if self.allow_http else {"https"}
        if parts.scheme not in schemes:
            raise DestinationRefused(
                f"the URL scheme must be {' or '.join(sorted(schemes))}, got {parts.scheme!r}"
            )
        if not parts.hostname:
            raise DestinationRefused("the URL has no host")
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            return
        if not self.address_allowed(literal):
            raise DestinationRefused(f"the address {literal} is not public and not in an allowed range")


class GuardedResolver(AbstractResolver):
    """Resolves like the default resolver, then drops every address the policy refuses."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self.inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        allowed = [r for r in results if self.policy.address_allowed(ipaddress.ip_address(r["host"]))]
        if not allowed:
            # errno and message: aiohttp shows the strerror in the connection error it raises.
            raise OSError(
                errno.EACCES,
                f"{host} resolves only to addresses that are not public and not in an allowed range",
            )
        return allowed

    async def close(self) -> None:
        await self.inner.close()
