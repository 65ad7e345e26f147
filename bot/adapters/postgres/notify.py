"""PostgreSQL ``LISTEN/NOTIFY`` as the fleet's wake-up bus (``bot.services.wakeups``).

Publishing is one ``SELECT pg_notify(…)`` on the store's pool (delivered at once: it runs outside
any transaction). Listening holds one connection of the pool with ``LISTEN``; when that connection
drops, it reconnects after a pause (meanwhile the trackers' own sweeps still find every change)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from bot.adapters.postgres.store import PostgresStore

log = logging.getLogger(__name__)

CHANNEL = "videobot_wakeups"
RECONNECT_SECONDS = 2.0


class PostgresWakeupBus:
    def __init__(self, store: PostgresStore, *, channel: str = CHANNEL) -> None:
        self.store = store
        self.channel = channel

    async def publish(self, message: str) -> None:
        await self.store.fetchone("SELECT pg_notify(?, ?)", (self.channel, message))

    async def listen(self, on_message: Callable[[str], None]) -> None:
        def received(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            on_message(str(payload))

        while True:
            try:
                async with self.store.pool.acquire() as conn:
                    lost = asyncio.Event()

                    def terminated(_conn: object, lost: asyncio.Event = lost) -> None:
                        lost.set()

                    conn.add_termination_listener(terminated)
                    await conn.add_listener(self.channel, received)
                    try:
                        await lost.wait()
                    finally:
                        conn.remove_termination_listener(terminated)
                        if not conn.is_closed():
                            await conn.remove_listener(self.channel, received)
                log.warning("lost the wake-up connection to PostgreSQL; reconnecting")
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning(
                    "lost the wake-up connection to PostgreSQL (%s); reconnecting", type(exc).__name__
                )
            await asyncio.sleep(RECONNECT_SECONDS)
