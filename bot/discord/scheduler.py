"""Plans every message write the bot makes to Discord within Discord's rate-limit buckets.

Discord limits message writes per channel (5 per 5 s, bot-token routes), per interaction token
(5 per 2 s, the interaction webhook routes) and globally (50 per s for every bot-token request;
interaction routes count toward neither the channel nor the global bucket). discord.py honours the
rate-limit headers on each request it makes; this module decides *which* writes to make so that no
request ever has to be refused with a 429:

- **Finals first, always.** Deliveries, failures and cancellations (``acquire(final=True)``) wait for
  room in their buckets, ahead of any progress edit.
- **Progress from what is left.** A progress edit (``offer_progress``) is merged per message (the
  latest state wins; the older one is shed, counted in ``progress_shed``), waits at least
  ``min_interval`` after the message's last edit, and is sent only when its buckets have room beyond
  a reserve kept for finals and no final is waiting on them. Messages take turns, the longest-waiting
  first, so under load every card still moves.
- **Learned from Discord.** The ``X-RateLimit-*`` headers of every answer (through an aiohttp
  ``TraceConfig`` handed to discord.py, whose HTTP layer stays as it is) pause a bucket that Discord
  says is empty until it resets, and lower a limit that Discord says is lower than planned.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.services.waiting import wait_event

log = logging.getLogger(__name__)

BucketKey = tuple[Hashable, ...]
GLOBAL: BucketKey = ("global",)


def channel_bucket(channel_id: int) -> BucketKey:
    return ("channel", channel_id)


def interaction_bucket(token: str) -> BucketKey:
    return ("interaction", token)


@dataclass(frozen=True)
class DiscordLimits:
    """Discord's documented buckets as ``(requests, seconds)``; ``margin`` seconds are added to every
    window (requests reach Discord a little later or earlier than they leave)."""

    per_channel: tuple[int, float] = (5, 5.0)
    per_interaction: tuple[int, float] = (5, 2.0)
    # Bot-token requests this scheduler does not make (fetches, DMs, command sync) share the global
    # bucket too: plan with 40 of its 50 per second.
    global_: tuple[int, float] = (40, 1.0)
    margin: float = 0.25
    # Slots of each window progress edits leave for finals.
    reserve_channel: int = 1
    reserve_interaction: int = 1
    reserve_global: int = 10

    def shared(self, share: float) -> DiscordLimits:
        """The limits of one process among several of one token: the global bucket, which every
        process spends, cut to this process's ``share`` (its shards over all shards). Channel and
        interaction buckets stay whole: a server's jobs are worked by the process of its shard."""
        if share >= 1.0:
            return self
        limit, per = self.global_
        scaled = max(2, int(limit * share))
        return dataclasses.replace(
            self, global_=(scaled, per), reserve_global=min(self.reserve_global, scaled // 4)
        )

    def window(self, key: BucketKey) -> tuple[int, float, int]:
        """(limit, seconds, reserve) of a bucket."""
        if key == GLOBAL:
            limit, per = self.global_
            return limit, per + self.margin, self.reserve_global
        if key[0] == "channel":
            limit, per = self.per_channel
            return limit, per + self.margin, self.reserve_channel
        limit, per = self.per_interaction
        return limit, per + self.margin, self.reserve_interaction


@dataclass
class _Window:
    """A sliding log of the writes made in one bucket (any ``limit + 1`` of them span more than
    ``per`` seconds, which also keeps within a fixed window that starts at its first request)."""

    limit: int
    per: float
    reserve: int
    sent: deque[float] = field(default_factory=deque)
    paused_until: float = 0.0
    finals_waiting: int = 0

    def _trim(self, now: float) -> None:
        while self.sent and self.sent[0] <= now - self.per:
            self.sent.popleft()

    def room(self, now: float) -> int:
        if now < self.paused_until:
            return 0
        self._trim(now)
        return max(0, self.limit - len(self.sent))

    def wait(self, now: float, need: int = 1) -> float:
        """Seconds until ``need`` slots are free (0 when they are now). A need larger than the
        bucket (Discord said it is smaller than planned) is cut to the whole bucket."""
        if now < self.paused_until:
            return self.paused_until - now
        self._trim(now)
        need = min(need, max(1, self.limit))
        over = len(self.sent) + need - self.limit
        if over <= 0:
            return 0.0
        return max(0.0, self.sent[over - 1] + self.per - now)

    def idle(self, now: float) -> bool:
        self._trim(now)
        return not self.sent and not self.finals_waiting and now >= self.paused_until


@dataclass
class _Progress:
    key: Hashable
    buckets: Callable[[], Sequence[BucketKey]]
    send: Callable[[Ticket], Coroutine[Any, Any, None]]
    not_before: float
    queued_at: float


@dataclass
class Ticket:
    """Slots already taken for a progress edit's first write (the presenter spends it)."""

    buckets: tuple[BucketKey, ...]
    spent: bool = False


@dataclass
class SchedulerStats:
    finals: int = 0
    progress_sent: int = 0
    progress_shed: int = 0  # older states replaced by a newer one, or dropped for a final
    refunded: int = 0
    learned_pauses: int = 0


class WriteScheduler:
    def __init__(self, limits: DiscordLimits | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.limits = limits or DiscordLimits()
        self._clock = clock
        self._windows: dict[BucketKey, _Window] = {}
        self._pending: dict[Hashable, _Progress] = {}
        self._last_progress: dict[Hashable, float] = {}
        self._running: dict[Hashable, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self.stats = SchedulerStats()

    # -- buckets ---------------------------------------------------------------------------------

    def _window(self, key: BucketKey) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(*self.limits.window(key))
        return window

    def _forget_idle(self, now: float) -> None:
        if len(self._windows) > 256:
            for key in [k for k, w in self._windows.items() if w.idle(now)]:
                del self._windows[key]

    def _take(self, keys: Sequence[BucketKey], now: float) -> None:
        for key in keys:
            self._window(key).sent.append(now)

    def refund(self, ticket: Ticket) -> None:
        """The write a ticket was taken for was not needed (nothing changed on the card)."""
        if ticket.spent:
            return
        ticket.spent = True
        for key in ticket.buckets:
            window = self._window(key)
            if window.sent:
                window.sent.pop()
        self.stats.refunded += 1
        self._wake.set()

    async def acquire(self, keys: Sequence[BucketKey], *, final: bool) -> None:
        """Wait for a slot in every bucket of ``keys`` and take it. A final waits only for room; a
        progress write also waits for the reserve and for every final waiting on its buckets."""
        windows = [self._window(key) for key in keys]
        if final:
            for window in windows:
                window.finals_waiting += 1
        try:
            while True:
                now = self._clock()
                if final:
                    wait = max((w.wait(now) for w in windows), default=0.0)
                else:
                    wait = max((self._progress_wait(w, now) for w in windows), default=0.0)
                if wait <= 0:
                    self._take(keys, now)
                    return
                await asyncio.sleep(min(wait, 1.0))
        finally:
            if final:
                for window in windows:
                    window.finals_waiting -= 1
                self.stats.finals += 1
                self._wake.set()

    def _progress_wait(self, window: _Window, now: float) -> float:
        if window.finals_waiting:
            return 0.05
        return window.wait(now, need=1 + window.reserve)

    # -- progress --------------------------------------------------------------------------------

    def offer_progress(
        self,
        key: Hashable,
        buckets: Callable[[], Sequence[BucketKey]],
        send: Callable[[Ticket], Coroutine[Any, Any, None]],
        *,
        min_interval: float,
        delay: float = 0.0,
    ) -> None:
        """Schedule a progress edit of message ``key``; an earlier one still waiting is replaced.
        ``send`` gets a ticket for its first write; it is called at most once at a time per key.
        ``delay``: not sent before that many seconds from now (a state that usually passes sooner,
        whose edit a final then replaces)."""
        now = self._clock()
        if key in self._pending:
            self.stats.progress_shed += 1
            queued_at = self._pending[key].queued_at
        else:
            queued_at = now
        not_before = max(self._last_progress.get(key, float("-inf")) + min_interval, now + delay)
        self._pending[key] = _Progress(key, buckets, send, not_before, queued_at)
        self._ensure_pump()
        self._wake.set()

    def drop(self, key: Hashable) -> None:
        """The message is about to show a final state: its waiting progress edit is shed."""
        if self._pending.pop(key, None) is not None:
            self.stats.progress_shed += 1
        self._last_progress.pop(key, None)

    async def settle(self, key: Hashable) -> None:
        """Drop the waiting progress edit of ``key`` and stop the one being sent."""
        self.drop(key)
        task = self._running.pop(key, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _ensure_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_pump(), name="discord-progress-pump")

    async def _run_pump(self) -> None:
        while self._pending or self._running:
            self._wake.clear()
            try:
                next_check = self._launch_ready()
            except Exception:  # a bug here must not stop every card's progress for good
                log.exception("the progress pump failed; trying again in a second")
                next_check = 1.0
            if not self._pending and not self._running:
                return
            await wait_event(self._wake, next_check)

    def _launch_ready(self) -> float:
        """Start every waiting progress edit that fits now, longest-waiting first; returns how long
        to sleep before looking again."""
        now = self._clock()
        self._forget_idle(now)
        soonest = 1.0
        for entry in sorted(self._pending.values(), key=lambda e: e.queued_at):
            if entry.key in self._running:
                continue  # one write per message at a time; the newer state follows it
            if now < entry.not_before:
                soonest = min(soonest, entry.not_before - now)
                continue
            keys = tuple(entry.buckets())
            waits = [self._progress_wait(self._window(k), now) for k in keys]
            wait = max(waits, default=0.0)
            if wait > 0:
                soonest = min(soonest, wait)
                continue
            self._take(keys, now)
            del self._pending[entry.key]
            self._last_progress[entry.key] = now
            self.stats.progress_sent += 1
            task: asyncio.Task[None] = asyncio.create_task(
                entry.send(Ticket(keys)), name=f"progress-{entry.key}"
            )
            self._running[entry.key] = task
            task.add_done_callback(functools.partial(self._finished, entry.key))
        return max(0.01, soonest)

    def _finished(self, key: Hashable, task: asyncio.Task[None]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        self._wake.set()

    async def close(self) -> None:
        self._pending.clear()
        tasks = [t for t in (self._pump, *self._running.values()) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()

    # -- learning from Discord's answers ---------------------------------------------------------

    def observe(self, method: str, path: str, status: int, headers: Any) -> None:
        """Read the rate-limit headers of one answer from Discord (any mapping of headers)."""
        key = bucket_of_path(path) if method in ("POST", "PATCH") else None
        is_global = status == 429 and (
            headers.get("X-RateLimit-Global") == "true" or headers.get("X-RateLimit-Scope") == "global"
        )
        if is_global:
            key = GLOBAL
        if key is None:
            return
        now = self._clock()
        window = self._window(key)
        limit = headers.get("X-RateLimit-Limit")
        if limit is not None and limit.isdigit() and 0 < int(limit) < window.limit:
            window.limit = int(limit)  # Discord says this bucket is smaller than planned
        remaining = headers.get("X-RateLimit-Remaining")
        reset_after = _float(headers.get("X-RateLimit-Reset-After") or headers.get("Retry-After"))
        if (status == 429 or remaining == "0") and reset_after is not None and 0 < reset_after < 3600:
            window.paused_until = max(window.paused_until, now + reset_after + self.limits.margin)
            self.stats.learned_pauses += 1
            if status == 429:
                log.warning(
                    "Discord refused a write with a 429 (%s); the plan missed a bucket", describe_bucket(key)
                )

    def trace_config(self) -> aiohttp.TraceConfig:
        """Hand to ``discord.Client(http_trace=…)``: every answer discord.py receives is observed."""
        config = aiohttp.TraceConfig()

        async def on_request_end(
            _session: aiohttp.ClientSession, _ctx: Any, params: aiohttp.TraceRequestEndParams
        ) -> None:
            try:
                self.observe(params.method, params.url.path, params.response.status, params.response.headers)
            except Exception:  # learning is best effort; a request must never fail because of it
                log.exception("could not read Discord's rate-limit headers")

        config.on_request_end.append(on_request_end)
        return config


_CHANNEL_MESSAGES = re.compile(r"/channels/(\d+)/messages(?:/\d+)?$")
_INTERACTION_MESSAGES = re.compile(r"/webhooks/\d+/([^/]+)(?:/messages/[^/]+)?$")


def describe_bucket(key: BucketKey) -> str:
    """A bucket for the log: never the interaction token, which can post as the bot."""
    if key == GLOBAL:
        return "the global bucket"
    if key[0] == "channel":
        return f"channel {key[1]}"
    return "an interaction's webhook"


def bucket_of_path(path: str) -> BucketKey | None:
    """The message bucket a request path writes to, if it is one this scheduler plans."""
    if match := _CHANNEL_MESSAGES.search(path):
        return channel_bucket(int(match[1]))
    if match := _INTERACTION_MESSAGES.search(path):
        return interaction_bucket(match[1])
    return None


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None
