"""Token buckets: the provider's request budget (``ProviderBudget``, by priority) and the
per-channel Discord edit budget.

Small provider tiers allow tens of requests per minute; going over earns 429s for every member at
once. Every request the client sends takes a token: the sustained rate never exceeds
``per_minute``, and a burst never exceeds ``burst`` (default: ten seconds' worth).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum


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

    def available(self) -> float:
        """Tokens in the bucket now (fractions count toward the next one)."""
        self._refill()
        return self._tokens

    def seconds_until(self, tokens: float) -> float:
        """How long until the bucket holds ``tokens`` (0: it does now)."""
        return max(0.0, (tokens - self.available()) / self.rate)

    def take(self) -> None:
        """Spend one token the caller checked is there (``available``)."""
        self._tokens -= 1

    def take_if_available(self) -> bool:
        """Take a token without waiting (for work that must not queue behind the budget)."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class RequestKind(IntEnum):
    """What a provider request is for, in the order the budget serves them: a finished video is
    already paid for and a member is waiting for it; a status check can reveal one; a new
    submission (create, remix, extension, edit) can wait; cleanup (delete) waits longest."""

    DOWNLOAD = 0
    STATUS = 1
    SUBMIT = 2
    CLEANUP = 3


RECENT_SUBMISSIONS = 10  # grants the recent submission rate is measured over
# Without a create limit of their own, submissions get at most this share of the overall rate:
# every submission brings a download (and its status checks) a generation later, so a minute of
# submissions at the full rate leaves the next minute's finished videos waiting for the budget.
SUBMIT_SHARE = 0.5


@dataclass(order=True)
class _Waiter:
    kind: RequestKind
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class ProviderBudget:
    """The provider request budget, served by priority (``RequestKind``), first come first served
    within a kind.

    Every request takes a token from the overall bucket (``per_minute``); a submission also takes one
    from the create bucket: ``creates_per_minute`` for providers that limit creates separately, else
    ``SUBMIT_SHARE`` of ``per_minute`` (half: with the whole budget, the downloads of a busy minute's
    submissions arrive a generation later as fast as the budget refills, and every status check on
    top of them makes finished videos wait). Submissions never spend the overall
    bucket's last ``reserve`` tokens (default: half the burst), so a download or status check that
    arrives during a burst of submissions finds a token at once. Half, because every submission
    brings a download later: the videos of a burst of submissions finish together, and their
    downloads find as many tokens waiting (with a quarter, a burst of 100 completions kept a backlog
    of ten downloads, 5 s each, for as long as submissions kept coming).
    """

    def __init__(
        self,
        per_minute: int,
        *,
        creates_per_minute: int | None = None,
        burst: int | None = None,
        reserve: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.overall = TokenBucket(per_minute, burst=burst, clock=clock)
        creates = creates_per_minute or max(1, int(per_minute * SUBMIT_SHARE))
        self.creates = TokenBucket(creates, clock=clock)
        capacity = int(self.overall.capacity)
        wanted = reserve if reserve is not None else max(1, capacity // 2)
        self.reserve = max(0, min(wanted, capacity - 1))
        self._clock = clock
        self._sleep = sleep
        self._waiting: list[_Waiter] = []
        self._seq = itertools.count()
        self._kick = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._submits_granted: deque[float] = deque(maxlen=RECENT_SUBMISSIONS)
        self.granted: dict[RequestKind, int] = dict.fromkeys(RequestKind, 0)

    # -- what members are told -------------------------------------------------------------------

    @property
    def submissions_per_second(self) -> float:
        """The most submissions per second the configured limits allow."""
        return min(self.overall.rate, self.creates.rate)

    def recent_submission_rate(self) -> float:
        """Submissions per second lately: the last few grants over the time since the first of them
        (a stall lowers it at once), at most the configured rate; the configured rate until enough
        were sent to tell. Honest estimates: a place in line divided by this."""
        if len(self._submits_granted) < RECENT_SUBMISSIONS:
            return self.submissions_per_second
        span = self._clock() - self._submits_granted[0]
        if span <= 0:
            return self.submissions_per_second
        return min(self.submissions_per_second, len(self._submits_granted) / span)

    def waiting(self, kind: RequestKind | None = None) -> int:
        """Requests waiting for a token now (of one kind, or all)."""
        return sum(1 for w in self._waiting if kind is None or w.kind is kind)

    # -- acquiring -------------------------------------------------------------------------------

    async def acquire(self, kind: RequestKind) -> None:
        """Wait for this request's turn and tokens."""
        if not any(w.kind <= kind for w in self._waiting) and self._take(kind):
            return
        waiter = _Waiter(kind, next(self._seq), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, waiter)
        self._kick.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._serve(), name="provider-budget")
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                # Granted just as it was cancelled: the token is spent, nothing to give back.
                raise
            with contextlib.suppress(ValueError):
                self._waiting.remove(waiter)
                heapq.heapify(self._waiting)
            self._kick.set()  # the server re-plans (and stops when nobody waits)
            raise

    def _take(self, kind: RequestKind) -> bool:
        if self.overall.available() < self._need(kind):
            return False
        if kind is RequestKind.SUBMIT and not self.creates.take_if_available():
            return False
        self.overall.take()
        self.granted[kind] += 1
        if kind is RequestKind.SUBMIT:
            self._submits_granted.append(self._clock())
        return True

    def _wait_for(self, kind: RequestKind) -> float:
        """How long until a request of ``kind`` could have its tokens."""
        wait = self.overall.seconds_until(self._need(kind))
        if kind is RequestKind.SUBMIT:
            wait = max(wait, self.creates.seconds_until(1))
        return wait

    def _need(self, kind: RequestKind) -> float:
        """Tokens the overall bucket must hold for ``kind`` to take one (submissions and cleanup
        leave the reserve to reads)."""
        return 1 + (self.reserve if kind >= RequestKind.SUBMIT else 0)

    async def _serve(self) -> None:
        """Grant waiting requests in priority order as tokens come in."""
        while self._waiting:
            head = self._waiting[0]
            if head.future.done():  # cancelled
                heapq.heappop(self._waiting)
                continue
            if self._take(head.kind):
                heapq.heappop(self._waiting)
                head.future.set_result(None)
                continue
            wait = self._wait_for(head.kind)
            started = self._clock()
            # A more urgent request that arrives meanwhile re-plans (its token may come sooner).
            self._kick.clear()
            sleeper = asyncio.ensure_future(self._sleep(wait))
            kicked = asyncio.ensure_future(self._kick.wait())
            try:
                await asyncio.wait({sleeper, kicked}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                kicked.cancel()
                self.overall.waited_seconds += self._clock() - started
