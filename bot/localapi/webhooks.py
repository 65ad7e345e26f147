"""Signed ``video.completed`` / ``video.failed`` events (Standard Webhooks), sent once a job settles."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Final

from aiohttp import ClientError, ClientSession, ClientTimeout
from standardwebhooks import Webhook

from bot.localapi.config import LocalRendererConfig
from bot.localapi.jobs import Job, state_at

log = logging.getLogger(__name__)

# How often a pending event re-reads the clock; small so that tests driving an injected clock see
# their event promptly.
_CLOCK_POLL_SECONDS: Final = 0.05
_TIMEOUT: Final = ClientTimeout(total=10)


class WebhookSender:
    def __init__(self, config: LocalRendererConfig) -> None:
        assert config.webhook_url and config.webhook_secret, "webhooks are not configured"
        self.config = config
        self._url = config.webhook_url
        self._webhook = Webhook(config.webhook_secret)
        self._session: ClientSession | None = None

    def open(self) -> None:
        self._session = ClientSession(timeout=_TIMEOUT)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send_outcome(self, job: Job) -> None:
        """Once the job is completed or failed, send the matching signed event (best effort)."""
        # The status is a function of an arbitrary clock, so there is nothing to wait on but time.
        while True:
            state = state_at(job, self.config, self.config.clock())
            if state.settled:
                break
            await asyncio.sleep(_CLOCK_POLL_SECONDS)
        assert self._session is not None, "the sender is not open"
        event_id = f"evt_{uuid.uuid4().hex}"
        payload = json.dumps(
            {
                "id": event_id,
                "object": "event",
                "created_at": int(self.config.clock()),
                "type": f"video.{state.status}",
                "data": {"id": job.id},
            }
        )
        # The signature timestamp is checked against the receiver's real clock, so it must be the
        # wall-clock time even when the job timeline runs on an injected clock.
        sent_at = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": self._webhook.sign(event_id, sent_at, payload),
        }
        try:
            async with self._session.post(self._url, data=payload, headers=headers) as reply:
                if reply.status >= 300:
                    log.warning("Webhook for %s was answered with HTTP %d", job.id, reply.status)
        except (ClientError, TimeoutError) as exc:
            log.warning("Webhook for %s could not be delivered: %s", job.id, exc)
