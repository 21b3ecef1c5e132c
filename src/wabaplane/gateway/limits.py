"""The limits a send must pass before Meta sees it: the tenant's quota, then Meta's own limits.

Every limiter is checked first and consumed only when all of them allow the send, so a refused
send costs no quota. Time comes from an injectable clock (tests move it; nothing sleeps). These are
this replica's limiters: with several replicas each enforces them locally (see the issue notes).
"""

from __future__ import annotations

from dataclasses import dataclass

from wabaplane.gateway.routing import NumberInfo, TenantInfo
from wabaplane.ratelimit import SlidingWindow, TokenBucket

STANDARD_MPS = 80
HIGH_MPS = 1000
PAIR_BURST = 45
PAIR_REFILL_SECONDS = 6.0
# Meta counts arrivals, the gateway counts admissions; the network's jitter between the two could
# put one more message into one of Meta's windows than the gateway saw in its own. The margins
# absorb it, so Meta's limits are never exceeded (at the cost of a little throughput).
WINDOW_MARGIN_SECONDS = 0.2
REFILL_MARGIN = 1.05
# Codes of the gateway's own refusals (Meta has none for these), in Meta's error envelope.
TENANT_QUOTA_CODE = 4290001
MONTHLY_CAP_CODE = 4290002
MESSAGING_LIMIT_CODE = 4290003
TIERS = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1000,
    "TIER_2K": 2000,
    "TIER_10K": 10000,
    "TIER_100K": 100000,
}


def messaging_limit(value: str | None) -> int | None:
    """Unique customers per rolling 24 h from the number's status; None when unlimited or unknown."""
    if value is None:
        return None
    if value in TIERS:
        return TIERS[value]
    text = value.strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


@dataclass(frozen=True)
class Refusal:
    reason: str
    code: int
    http_status: int
    details: str
    retry_after: float | None = None


class Limits:
    """This replica's limiters. `share` scales every limit (1/replicas while Redis is unreachable)."""

    def __init__(self, share: float = 1.0) -> None:
        self.share = share
        self.tenants: dict[tuple[str, str], tuple[tuple[int, int], TokenBucket]] = {}
        self.numbers: dict[str, SlidingWindow] = {}
        self.pairs: dict[tuple[str, str], TokenBucket] = {}

    def _tenant_bucket(self, tenant: TenantInfo, now: float) -> TokenBucket:
        shape = (tenant.messages_per_second, tenant.burst)
        found = self.tenants.get(tenant.key)
        if found is None or found[0] != shape:
            bucket = TokenBucket(self._scaled(tenant.burst), 1.0 / (tenant.messages_per_second * self.share))
            bucket.updated = now
            self.tenants[tenant.key] = (shape, bucket)
            return bucket
        return found[1]

    def _number_window(self, number: NumberInfo) -> SlidingWindow:
        limit = self._scaled(HIGH_MPS if number.throughput_level == "HIGH" else STANDARD_MPS)
        window = self.numbers.setdefault(
            number.phone_number_id, SlidingWindow(limit, 1.0 + WINDOW_MARGIN_SECONDS)
        )
        window.limit = limit
        return window

    def _pair_bucket(self, number: NumberInfo, customer: str, now: float) -> TokenBucket:
        key = (number.phone_number_id, customer)
        if key not in self.pairs:
            bucket = TokenBucket(self._scaled(PAIR_BURST), PAIR_REFILL_SECONDS * REFILL_MARGIN / self.share)
            bucket.updated = now
            self.pairs[key] = bucket
        return self.pairs[key]

    def _scaled(self, limit: int) -> int:
        return max(1, int(limit * self.share))

    def check(self, tenant: TenantInfo, number: NumberInfo, customer: str, now: float) -> Refusal | None:
        """Refuse, or consume one send from every limiter."""
        bucket = self._tenant_bucket(tenant, now)
        wait = bucket.wait(now)
        if wait is not None:
            return Refusal("tenant_quota", TENANT_QUOTA_CODE, 429,
                           f"the tenant's quota of {tenant.messages_per_second} messages per second "
                           f"(burst {tenant.burst}) is used up", wait)  # fmt: skip
        window = self._number_window(number)
        wait = window.wait(now)
        if wait is not None:
            return Refusal("throughput", 130429, 429,
                           f"phone number {number.phone_number_id} is at Meta's throughput of {window.limit} "
                           "messages per second", max(wait, 1.0))  # fmt: skip
        pair = self._pair_bucket(number, customer, now)
        wait = pair.wait(now)
        if wait is not None:
            return Refusal("pair_rate", 131056, 429,
                           f"too many messages to {customer} from this number in a short time (Meta allows about "
                           "one every 6 seconds after a burst)", wait)  # fmt: skip
        bucket.take(now)
        window.take(now)
        pair.take(now)
        return None
