from __future__ import annotations

import asyncio

import pytest

from bot.services.ratelimit import ProviderBudget, RequestKind, TokenBucket


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_burst_is_capped_and_the_rest_waits_for_tokens(monkeypatch: object) -> None:
    clock = ManualClock()
    bucket = TokenBucket(60, burst=3, clock=clock)  # one token per second
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)  # type: ignore[attr-defined]
    for _ in range(5):
        await bucket.acquire()
    # Three at once, then one per second.
    assert slept == [1.0, 1.0]
    assert bucket.waited_seconds == 2.0
    clock.now += 10  # idle time refills, but never beyond the burst
    slept.clear()
    for _ in range(4):
        await bucket.acquire()
    assert slept == [1.0]


def test_default_burst_is_ten_seconds_of_budget() -> None:
    assert TokenBucket(120).capacity == 20
    assert TokenBucket(3).capacity == 1


class SteppingClock:
    """A manual clock whose ``sleep`` moves time on (and yields, so other tasks run)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def _grant_order(budget: ProviderBudget, kinds: list[RequestKind]) -> list[str]:
    order: list[str] = []

    async def one(name: str, kind: RequestKind) -> None:
        await budget.acquire(kind)
        order.append(name)

    tasks = [asyncio.create_task(one(f"{kind.name.lower()}{n}", kind)) for n, kind in enumerate(kinds)]
    await asyncio.gather(*tasks)
    return order


async def test_a_burst_of_submissions_never_delays_a_download() -> None:
    clock = SteppingClock()
    budget = ProviderBudget(60, burst=4, clock=clock, sleep=clock.sleep)  # one token per second
    assert budget.reserve == 2
    submits = [asyncio.create_task(budget.acquire(RequestKind.SUBMIT)) for _ in range(10)]
    await asyncio.sleep(0)
    # Submissions took what the reserve allows; the rest queue.
    assert sum(t.done() for t in submits) == 2
    assert budget.waiting(RequestKind.SUBMIT) == 8
    started = clock.now
    for _ in range(2):
        await budget.acquire(RequestKind.DOWNLOAD)  # the reserved tokens: no wait at all
    assert clock.now == started
    # Behind the queued submissions, a status check and a download still go first.
    order = await _grant_order(budget, [RequestKind.STATUS, RequestKind.DOWNLOAD])
    assert order == ["download1", "status0"]
    assert budget.waiting(RequestKind.SUBMIT) == 8
    await asyncio.gather(*submits)
    assert budget.granted[RequestKind.SUBMIT] == 10


async def test_kinds_are_served_by_priority_and_in_arrival_order_within_a_kind() -> None:
    clock = SteppingClock()
    budget = ProviderBudget(60, burst=1, clock=clock, sleep=clock.sleep)
    await budget.acquire(RequestKind.STATUS)  # the bucket is empty now
    kinds = [RequestKind.SUBMIT, RequestKind.CLEANUP, RequestKind.STATUS, RequestKind.SUBMIT]
    kinds += [RequestKind.DOWNLOAD, RequestKind.STATUS]
    order = await _grant_order(budget, kinds)
    assert order == ["download4", "status2", "status5", "submit0", "submit3", "cleanup1"]
    assert clock.now == 6.0  # one token a second: nothing was wasted


async def test_creates_have_their_own_budget_beside_the_overall_one() -> None:
    clock = SteppingClock()
    # 600 requests a minute overall, but only 6 creates a minute (one every 10 s).
    budget = ProviderBudget(600, creates_per_minute=6, clock=clock, sleep=clock.sleep)
    assert budget.submissions_per_second == 0.1
    await budget.acquire(RequestKind.SUBMIT)  # the create bucket's one token
    waiting = asyncio.create_task(budget.acquire(RequestKind.SUBMIT))
    await asyncio.sleep(0)
    assert not waiting.done()
    # Reads are not held up by the create limit.
    for _ in range(20):
        await budget.acquire(RequestKind.STATUS)
    assert clock.now < 10
    await waiting
    assert clock.now >= 10


async def test_without_a_create_limit_submissions_leave_half_the_budget_to_their_downloads() -> None:
    clock = SteppingClock()

    async def pass_turn(_seconds: float) -> None:  # time moves only when the test says
        await asyncio.sleep(0)

    budget = ProviderBudget(120, clock=clock, sleep=pass_turn)  # 2 tokens a second, 20 at once
    assert budget.submissions_per_second == 1.0
    submits = [asyncio.create_task(budget.acquire(RequestKind.SUBMIT)) for _ in range(200)]

    async def one_second() -> None:
        clock.now += 1
        for _ in range(5):
            await asyncio.sleep(0)

    for _ in range(60):
        await one_second()
    # A minute of submissions at half the rate (after the create bucket's first ten), not the 130
    # the whole budget would have let through...
    assert 65 <= budget.granted[RequestKind.SUBMIT] <= 71
    # ...so their downloads, a generation later, find the other half free: a minute of them, one a
    # second, and a status check every two seconds, each granted the moment it asks.
    for second in range(60):
        kinds = [RequestKind.DOWNLOAD] + ([RequestKind.STATUS] if second % 2 == 0 else [])
        for kind in kinds:
            read = asyncio.create_task(budget.acquire(kind))
            await asyncio.sleep(0)
            assert read.done(), f"a {kind.name} waited at {clock.now:.0f} s"
        await one_second()
    assert budget.waiting(RequestKind.SUBMIT) > 0  # the rest of the submissions wait their turn
    for task in submits:
        task.cancel()
    await asyncio.gather(*submits, return_exceptions=True)


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    clock = SteppingClock()
    budget = ProviderBudget(60, burst=1, clock=clock, sleep=clock.sleep)
    await budget.acquire(RequestKind.STATUS)
    waiter = asyncio.create_task(budget.acquire(RequestKind.SUBMIT))
    await asyncio.sleep(0)
    assert budget.waiting() == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert budget.waiting() == 0
    await budget.acquire(RequestKind.DOWNLOAD)
    assert budget.granted[RequestKind.SUBMIT] == 0


def test_recent_submission_rate_falls_back_to_the_configured_one() -> None:
    clock = SteppingClock()
    budget = ProviderBudget(120, creates_per_minute=30, clock=clock)
    assert budget.recent_submission_rate() == 0.5


async def test_the_recent_submission_rate_is_measured_and_a_stall_lowers_it() -> None:
    clock = SteppingClock()
    budget = ProviderBudget(600, creates_per_minute=60, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        await budget.acquire(RequestKind.SUBMIT)
        clock.now += 2.0  # the provider answers slower than the budget allows
    assert budget.recent_submission_rate() == pytest.approx(10 / 20)
    clock.now += 30  # nothing sent for half a minute
    assert budget.recent_submission_rate() == pytest.approx(10 / 50)
