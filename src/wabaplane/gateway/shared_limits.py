"""Limits shared by every gateway replica through Redis, with a local fallback.

One Lua script checks the tenant's bucket, the number's window and the pair's bucket and consumes
all three only when all allow, atomically, so replicas never admit more together than one would.
When Redis does not answer (short timeouts), the replica switches at once to local limiters at
its share of each limit (limit / replicas) and tries Redis again a second later: the tenants'
quotas may then run a little under, and Meta's limits are still never exceeded.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wabaplane.gateway.limits import (
    HIGH_MPS,
    PAIR_BURST,
    PAIR_REFILL_SECONDS,
    REFILL_MARGIN,
    STANDARD_MPS,
    TENANT_QUOTA_CODE,
    WINDOW_MARGIN_SECONDS,
    Limits,
    Refusal,
)
from wabaplane.gateway.routing import NumberInfo, TenantInfo

logger = logging.getLogger("wabaplane.gateway.limits")
RETRY_REDIS_AFTER = 1.0
CHECK_ALL = """
local now = tonumber(ARGV[1])
local function tokens(key, capacity, refill)
  local state = redis.call('HMGET', key, 'tokens', 'updated')
  local current = tonumber(state[1]) or capacity
  local updated = tonumber(state[2]) or now
  return math.min(capacity, current + math.max(0, now - updated) / refill)
end
local tenant_tokens = tokens(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
if tenant_tokens < 1 then return {1, tostring((1 - tenant_tokens) * tonumber(ARGV[3]))} end
local window = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {2, tostring(tonumber(oldest[2]) + window - now)}
end
local pair_tokens = tokens(KEYS[3], tonumber(ARGV[6]), tonumber(ARGV[7]))
if pair_tokens < 1 then return {3, tostring((1 - pair_tokens) * tonumber(ARGV[7]))} end
redis.call('HSET', KEYS[1], 'tokens', tenant_tokens - 1, 'updated', now)
redis.call('EXPIRE', KEYS[1], 3600)
redis.call('ZADD', KEYS[2], now, ARGV[8])
redis.call('EXPIRE', KEYS[2], 10)
redis.call('HSET', KEYS[3], 'tokens', pair_tokens - 1, 'updated', now)
redis.call('EXPIRE', KEYS[3], 3600)
return {0, '0'}
"""


class SharedLimits:
    def __init__(self, url: str, replicas: int, timeout: float = 0.25) -> None:
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.script = self.client.register_script(CHECK_ALL)
        self.fallback = Limits(share=1.0 / max(1, replicas))
        self.down_until = 0.0
        self.sequence = 0

    async def close(self) -> None:
        await self.client.aclose()

    async def check(
        self, tenant: TenantInfo, number: NumberInfo, customer: str, now: float
    ) -> Refusal | None:
        if now >= self.down_until:
            try:
                return await self._shared(tenant, number, customer, now)
            except (RedisError, OSError) as error:
                logger.warning(
                    "Redis unavailable (%s): limits are local at this replica's share", type(error).__name__
                )
                self.down_until = now + RETRY_REDIS_AFTER
        return self.fallback.check(tenant, number, customer, now)

    async def _shared(
        self, tenant: TenantInfo, number: NumberInfo, customer: str, now: float
    ) -> Refusal | None:
        self.sequence += 1
        per_second = HIGH_MPS if number.throughput_level == "HIGH" else STANDARD_MPS
        keys = [f"wabaplane:tenant:{tenant.namespace}/{tenant.name}", f"wabaplane:number:{number.phone_number_id}",
                f"wabaplane:pair:{number.phone_number_id}:{customer}"]  # fmt: skip
        args: list[str | int | float] = [now, tenant.burst, 1.0 / tenant.messages_per_second, per_second, 1.0 + WINDOW_MARGIN_SECONDS,
                PAIR_BURST, PAIR_REFILL_SECONDS * REFILL_MARGIN, f"{now}:{id(self)}:{self.sequence}"]  # fmt: skip
        which, wait_text = await self.script(keys=keys, args=args)
        wait = float(wait_text)
        if int(which) == 0:
            return None
        if int(which) == 1:
            return Refusal("tenant_quota", TENANT_QUOTA_CODE, 429,
                           f"the tenant's quota of {tenant.messages_per_second} messages per second "
                           f"(burst {tenant.burst}) is used up", wait)  # fmt: skip
        if int(which) == 2:
            return Refusal("throughput", 130429, 429, f"phone number {number.phone_number_id} is at Meta's "
                           f"throughput of {per_second} messages per second", max(wait, 1.0))  # fmt: skip
        return Refusal("pair_rate", 131056, 429, f"too many messages to {customer} from this number in a short time "
                       "(Meta allows about one every 6 seconds after a burst)", wait)  # fmt: skip
