"""Waiting for an ``asyncio.Event`` with a timeout, without losing a cancellation.

On Python 3.11, ``asyncio.wait_for`` can swallow a ``cancel()`` that arrives as the awaited event
is set: the loop that waits carries on, and a shutdown then hangs until its grace period runs out.
``asyncio.timeout`` (the mechanism ``wait_for`` itself uses from 3.12) has no such race.
"""

from __future__ import annotations

import asyncio
import contextlib


async def wait_event(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
    """Wait until ``event`` is set or ``timeout`` seconds pass; True when it was set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()
