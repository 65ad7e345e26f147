"""What tests that drive a whole bot share, whether it runs as a process (``tests/e2e``) or in the
test's event loop (``tests/cog``'s ``bot``): reading cards, uploads and stored jobs, making videos,
seeding history. ``bot`` arguments need only a ``database`` path."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from bot.adapters.sqlite.store import Store
from bot.domain.jobs import ChargeState, JobRequest, JobStatus
from tests.fakes.discord import (
    ROUTE_CALLBACK,
    ROUTE_WEBHOOK,
    FakeDiscord,
    InteractionHandle,
    RecordedRequest,
    StoredMessage,
)
from tests.fakes.provider import InstrumentedRenderer
from tests.helpers import READY, ephemeral_content, wait_for

UPDATE_MESSAGE = 7
MODAL = 9


class RunningBot(Protocol):
    """``BotProcess`` or ``InProcessBot``: where the bot keeps its SQLite database."""

    @property
    def database(self) -> Path: ...


def provider_saw_prompt(renderer: InstrumentedRenderer, prompt: str) -> bool:
    return any(
        isinstance(r.json_body, dict) and r.json_body.get("prompt") == prompt for r in renderer.requests
    )


def mp4_uploads(fake: FakeDiscord, since: int = 0) -> list[tuple[RecordedRequest, bytes]]:
    """MP4 files Discord accepted (refused attempts, e.g. a 403 or 429, don't count)."""
    return [
        (r, f.data)
        for r in fake.requests[since:]
        if 200 <= r.status < 300
        for f in r.files
        if f.filename.endswith(".mp4")
    ]


def embed_of(message: StoredMessage) -> dict[str, Any]:
    assert message.embeds, f"message {message.id} has no embed"
    return message.embeds[0]


def field_value(embed: dict[str, Any], name: str) -> str | None:
    return next((f["value"] for f in embed.get("fields", []) if f["name"] == name), None)


def is_final(title: str) -> Callable[[StoredMessage], bool]:
    return lambda m: bool(m.embeds) and m.embeds[0].get("title") == title


async def ephemeral_text(handle: InteractionHandle) -> str:
    """Refusals and private answers: an immediate reply only the member sees."""
    return ephemeral_content((await handle.wait_response(timeout=10)).json)


def job_number(message: StoredMessage) -> int:
    return int(embed_of(message)["footer"]["text"].split("#")[1])


def buttons(message: StoredMessage) -> dict[str, dict[str, Any]]:
    """Label → button, for every button on the message."""
    found: dict[str, dict[str, Any]] = {}
    for row in message.components:
        for component in row.get("components", []):
            if component.get("type") == 2:
                found[str(component.get("label"))] = component
    return found


def job_row(bot: RunningBot, job_id: int) -> sqlite3.Row:
    """A job as the bot stored it (the bot is another process; SQLite in WAL mode lets us read)."""
    with sqlite3.connect(bot.database) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert row is not None, f"no job #{job_id}"
    return row


async def recorded_as_delivered(bot: RunningBot, job_id: int) -> None:
    """The card shows the video a moment before the bot records the delivery (and the charge)."""
    await wait_for(lambda: job_row(bot, job_id)["status"] == "completed", f"job #{job_id} to be recorded")


def creates(renderer: InstrumentedRenderer) -> list[str]:
    """Paths of every create and remix request the provider received."""
    return [r.path for r in renderer.requests if r.method == "POST"]


async def allow_back_to_back_requests(fake: FakeDiscord) -> None:
    """The default 30 s cooldown would refuse the second request of these tests."""
    handle = await fake.invoke_command(
        "videomod settings", {"cooldown": 0, "max_concurrent": 5}, user=int(fake.owner_user["id"])
    )
    await handle.wait_response(timeout=10)


async def make_video(fake: FakeDiscord, prompt: str, *, user: int | None = None) -> StoredMessage:
    handle = await fake.invoke_command("video", {"prompt": prompt}, user=user)
    return await handle.original_message(timeout=60, predicate=is_final(READY))


async def seed_jobs(
    bot: RunningBot,
    fake: FakeDiscord,
    user_id: int,
    prompts: Sequence[str],
    *,
    status: JobStatus = JobStatus.COMPLETED,
) -> list[int]:
    """History from earlier weeks, written before the bot starts (so its tracker has nothing to
    resume): finished jobs with a provider id and a message to link to."""
    ids = []
    async with Store.open(bot.database) as store:
        for prompt in prompts:
            request = JobRequest(
                guild_id=fake.guild_id,
                channel_id=fake.channel_id,
                user_id=user_id,
                user_name="seeded",
                prompt=prompt,
                model="sora-2",
                size="720x1280",
                seconds=4,
                cost=4,
                usd=0.4,
            )
            job_id = await store.insert_job(request)
            done = status is JobStatus.COMPLETED
            await store.update_job(
                job_id,
                status=status,
                charge_state=ChargeState.CHARGED if done else ChargeState.REFUNDED,
                progress=100 if done else 0,
                provider_video_id=f"video_seeded{job_id}" if done else None,
                error_message=None if done else "The video provider is not responding right now.",
                reply_message_id=fake.snowflake(),
                finished_at=time.time(),
            )
            ids.append(job_id)
    return ids


def no_pings(fake: FakeDiscord, since: int) -> None:
    """Every message the bot posted or edited since ``since`` carried ``allowed_mentions`` that ping
    nobody (interaction callbacks carry the message under ``data``)."""
    bodies = []
    for r in fake.requests[since:]:
        if not isinstance(r.json, dict):
            continue
        if r.route == ROUTE_CALLBACK:
            if r.json.get("type") in (4, UPDATE_MESSAGE):
                bodies.append(r.json.get("data") or {})
        elif (r.method in ("POST", "PATCH") and "messages" in (r.route or "")) or r.route == ROUTE_WEBHOOK:
            bodies.append(r.json)
    assert bodies and all(body.get("allowed_mentions", {}).get("parse") == [] for body in bodies), bodies
