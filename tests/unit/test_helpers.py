"""The suite's own bounded wait: it returns what the check found, and a timeout names what it waited for."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import wait_for


async def test_wait_for_returns_the_first_truthy_result_of_a_sync_or_async_check() -> None:
    seen: list[int] = []

    def later() -> list[int] | None:
        seen.append(len(seen))
        return seen if len(seen) >= 3 else None

    assert await wait_for(later, "three calls", timeout=5, interval=0) == [0, 1, 2]

    async def ready() -> str:
        await asyncio.sleep(0)
        return "ok"

    assert await wait_for(ready, "an async check", timeout=5) == "ok"


async def test_wait_for_fails_with_what_it_was_waiting_for() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the moon"):
        await wait_for(lambda: False, "the moon", timeout=0.05)
