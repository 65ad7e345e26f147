"""Wake-ups across processes: a submit, a cancel or a provider webhook received by any process of
the fleet reaches the process working that job at once, with no extra polling.

``FleetWakeups`` acts locally first (this process's tracker sweeps now, or takes the webhook's
event) and, when a bus is configured (PostgreSQL ``LISTEN/NOTIFY``), tells every other process the
same; what it hears from the others it hands to its own tracker. A tracker only moves the jobs it
holds the lease of (``bot.services.leases``), so a wake-up reaching every process costs the others
one sweep of their own jobs, and a webhook for a job another process works is acted on there. On
SQLite (one process) there is no bus: everything stays in-process, as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from bot.services.ports import WakeupBus

log = logging.getLogger(__name__)


class FleetWakeups:
    def __init__(self, bus: WakeupBus | None = None) -> None:
        self.bus = bus
        self.sender = uuid.uuid4().hex  # this process, to skip its own messages
        self._wake: Callable[[], None] = lambda: None
        self._video_event: Callable[[str, str], None] = lambda _video_id, _event: None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.received = 0  # wake-ups heard from other processes

    def deliver_to(self, wake: Callable[[], None], video_event: Callable[[str, str], None]) -> None:
        """This process's tracker: what a wake-up does here (set by the composition root)."""
        self._wake = wake
        self._video_event = video_event

    # -- from this process -------------------------------------------------------------------------

    def job_changed(self) -> None:
        """A job was submitted or cancelled here: sweep now, here and in the other processes."""
        self._wake()
        self._publish({"kind": "wake"})

    def video_event(self, video_id: str, event_type: str = "video.completed") -> None:
        """A verified provider webhook arrived here: act on it, here or where the job is worked."""
        self._video_event(video_id, event_type)
        self._publish({"kind": "video", "video_id": video_id, "event": event_type})

    def _publish(self, message: dict[str, str]) -> None:
        if self.bus is None:
            return
        bus = self.bus
        text = json.dumps({**message, "sender": self.sender})

        async def publish() -> None:
            try:
                await bus.publish(text)
            except Exception as exc:  # the other processes' own sweeps still find the change
                log.warning("could not tell the other processes (%s: %s)", type(exc).__name__, exc)

        task = asyncio.get_running_loop().create_task(publish(), name="fleet-wakeup")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- from the other processes ------------------------------------------------------------------

    def heard(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("sender") == self.sender:
            return
        self.received += 1
        if message.get("kind") == "video" and isinstance(message.get("video_id"), str):
            self._video_event(message["video_id"], str(message.get("event") or "video.completed"))
        else:
            self._wake()

    async def listen_forever(self) -> None:
        """Runs beside the tracker (its housekeeping): hears the other processes until cancelled."""
        if self.bus is None:
            await asyncio.Event().wait()
            return
        await self.bus.listen(self.heard)
