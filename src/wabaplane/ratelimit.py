"""The two limiter shapes Meta documents, a counted window and a burst bucket (emulator and gateway)."""

from __future__ import annotations

import time
from collections import deque


class SlidingWindow:
    """At most `limit` events in any `seconds`-long window."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.events: deque[float] = deque()

    def wait(self, now: float) -> float | None:
        """None when an event is allowed now, else the seconds until one is (records nothing)."""
        while self.events and self.events[0] <= now - self.seconds:
            self.events.popleft()
        if len(self.events) >= self.limit:
            return self.events[0] + self.seconds - now
        return None

    def take(self, now: float) -> None:
        self.events.append(now)

    def try_acquire(self, now: float | None = None) -> float | None:
        """Record an event and return None, or return the seconds until one is allowed."""
        now = time.monotonic() if now is None else now
        wait = self.wait(now)
        if wait is None:
            self.take(now)
        return wait


class TokenBucket:
    """A burst of `capacity`, refilled by one every `refill_seconds` (Meta's pair rate)."""

    def __init__(self, capacity: int, refill_seconds: float) -> None:
        self.capacity = capacity
        self.refill_seconds = refill_seconds
        self.tokens = float(capacity)
        self.updated = time.monotonic()

    def wait(self, now: float) -> float | None:
        """None when a token is available now, else the seconds until one is (takes nothing)."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) / self.refill_seconds)
        self.updated = max(self.updated, now)
        return None if self.tokens >= 1 else (1 - self.tokens) * self.refill_seconds

    def take(self, now: float) -> None:
        self.tokens -= 1

    def try_acquire(self, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        wait = self.wait(now)
        if wait is None:
            self.take(now)
        return wait
