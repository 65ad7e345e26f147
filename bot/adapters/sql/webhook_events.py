"""Provider webhook ids already accepted, in the database so a restart doesn't forget them."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.adapters.sql.store import SqlStore


class WebhookEventLog:
    """``claim(event_id)`` is True the first time an id is seen within ``window_seconds``.

    The window only needs to outlast the signed timestamp's tolerance: an older resend is refused
    by its timestamp before its id is looked at. Expired rows are deleted on each claim, so the
    table holds at most one window's worth of events. Wall-clock time, since rows outlive the
    process."""

    def __init__(
        self, store: SqlStore, *, window_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self.window_seconds = window_seconds
        self._clock = clock

    async def claim(self, event_id: str) -> bool:
        now = self._clock()
        async with self._store.transaction() as tx:
            await self._store.execute(
                "DELETE FROM webhook_events WHERE seen_at <= ?", (now - self.window_seconds,), tx=tx
            )
            claimed = await self._store.execute(
                "INSERT INTO webhook_events(id, seen_at) VALUES (?, ?) ON CONFLICT(id) DO NOTHING",
                (event_id, now),
                tx=tx,
            )
            return claimed == 1
