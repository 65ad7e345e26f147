"""``wait_event``: a loop that waits for its wake-up event with a timeout must still stop when
cancelled at the moment the event is set (Python 3.11's ``asyncio.wait_for`` loses that cancel,
and the bot's shutdown then hung for its whole grace period)."""

from __future__ import annotations

import asyncio

import pytest

from bot.services import waiting


async def test_a_cancel_that_arrives_with_the_event_stops_the_waiter() -> None:
    event = asyncio.Event()
    waiter = asyncio.create_task(waiting.wait_event(event, 60))
    await asyncio.sleep(0)  # the waiter is waiting
    event.set()  # the waiter is woken but has not run yet: the race wait_for loses
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_it_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await waiting.wait_event(event, 0.01) is False
    event.set()
    assert await waiting.wait_event(event, 60) is True
