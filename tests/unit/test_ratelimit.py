from __future__ import annotations

import asyncio

from bot.services.ratelimit import TokenBucket


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
