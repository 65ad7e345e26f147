"""A token bucket: the provider's request budget and the per-channel Discord edit budget.

Small provider tiers allow tens of requests per minute; going over earns 429s for every member at
once. Every request the client sends takes a token: the sustained rate never exceeds
``per_minute``, and a burst never exceeds ``burst`` (default: ten seconds' worth).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self, per_minute: int, *, burst: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, per_minute // 6))
        self._tokens = self.capacity
        self._clock = clock
        self._updated = clock()
        self._lock = asyncio.Lock()  # waiters are served in arrival order
        self.waited_seconds = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                wait = (1 - self._tokens) / self.rate
                self.waited_seconds += wait
                await asyncio.sleep(wait)  # rate shaping: exactly until the next token exists
                self._refill()
            self._tokens -= 1

    def take_if_available(self) -> bool:
        """Take a token without waiting (for work that must not queue behind the budget)."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
