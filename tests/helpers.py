"""What many tests share: the titles members see, bounded waits, free ports and controllable clocks."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

READY = "🎬 Your video is ready"
FAILED = "❌ The video could not be made"
CANCELLED = "⏹️ Cancelled"
EPHEMERAL = 64
"""Discord's message flag for "only the member who asked can see this"."""


async def wait_for(
    check: Callable[[], T | Awaitable[T]],
    what: str,
    *,
    timeout: float = 20.0,  # noqa: ASYNC109 - the timeout is the point of this helper
    interval: float = 0.02,
) -> T:
    """Wait until ``check()`` returns something truthy and return it; ``check`` may be async.

    For state that has no event to wait on (another process's log or database, a server in this
    loop that records requests). Bounded: fails with ``what`` in the message after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = check()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return result  # type: ignore[return-value]
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


def free_port() -> int:
    """A TCP port the OS says is free now, for a server in another process that needs a number up
    front (parallel workers each get their own)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ManualClock:
    """A clock that only moves when told to; used as ``LocalRendererConfig.clock``."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ephemeral_content(callback_json: dict[str, Any]) -> str:
    """The text of an immediate interaction reply (type 4), checked to be visible to its member only."""
    assert callback_json["type"] == 4, callback_json
    data = callback_json.get("data") or {}
    assert data.get("flags", 0) & EPHEMERAL, f"this reply must be ephemeral (flag 64): {data}"
    return str(data.get("content") or "")
