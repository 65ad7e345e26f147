"""The discord.py Bot: wires the services in ``setup_hook``, loads the cogs, maps errors to replies."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.adapters.sqlite.credits import SqliteCreditsRepository
from bot.adapters.sqlite.history import SqliteHistoryRepository
from bot.adapters.sqlite.store import Store
from bot.adapters.videoapi.client import VideoAPIClient
from bot.discord.presenter import NO_MENTIONS, DiscordPresenter
from bot.domain.catalog import Catalog
from bot.domain.errors import UserError
from bot.domain.jobs import Job
from bot.domain.messages import cancel_refusal
from bot.services.credits import CreditsService
from bot.services.history import HistoryService
from bot.services.jobs import JobService
from bot.services.tracker import JobTracker
from bot.settings import Settings

log = logging.getLogger(__name__)

COMMAND_HASH_KEY = "command_tree_hash"


def point_discord_at(api_base_url: str, gateway_url: str) -> None:
    """Send discord.py's REST calls and gateway connection to the configured bases (a proxy, or the
    fake Discord in tests). discord.py reads both from class attributes."""
    discord.http.Route.BASE = api_base_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class VideoBot(commands.Bot):
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        api: VideoAPIClient,
        catalog: Catalog,
    ) -> None:
        # The bot never joins voice: discord.py's start-up warnings about voice libraries are noise.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True  # channels and roles; interactions carry the member, so no members intent
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=NO_MENTIONS,
            help_command=None,
            chunk_guilds_at_startup=False,
        )
        self.settings = settings
        self.store = store
        self.api = api
        self.catalog = catalog
        self.presenter = DiscordPresenter(
            self, store, catalog, edit_interval=settings.progress_edit_interval_seconds
        )
        self.tracker = JobTracker(
            store,
            api,
            self.presenter,
            settings.data_dir,
            poll_interval=settings.poll_interval_seconds,
            push_mode=settings.webhooks_enabled,
            safety_interval=settings.webhook_safety_sweep_seconds,
            max_concurrent_submissions=settings.max_concurrent_submissions,
            max_concurrent_deliveries=settings.max_concurrent_deliveries,
            deadline_seconds=settings.job_deadline_minutes * 60,
        )
        history = SqliteHistoryRepository(store)
        self.credits = CreditsService(SqliteCreditsRepository(store), history, catalog=catalog)
        self.history = HistoryService(history)
        self.jobs = JobService(store, on_new_job=self.tracker.wake, credits_service=self.credits)
        self._background: set[asyncio.Task[None]] = set()
        self.tree.error(self.on_app_command_error)

    async def setup_hook(self) -> None:
        from bot.discord.cogs.credits import CreditsCog
        from bot.discord.cogs.history import HistoryCog
        from bot.discord.cogs.video import VideoCog
        from bot.discord.views import DYNAMIC_ITEMS, JobButtons

        video_cog = VideoCog(self)
        await self.add_cog(video_cog)
        await self.add_cog(CreditsCog(self))
        await self.add_cog(HistoryCog(self, video_cog))
        # Buttons parse their state from custom_id, so messages from earlier runs keep working.
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        self.presenter.views = JobButtons()
        await self.sync_commands_if_changed()
        self.tracker.start()  # resumes every unfinished job from the store

    async def close(self) -> None:
        await self.tracker.stop()
        await self.presenter.close()
        for task in list(self._background):
            task.cancel()
        await super().close()

    async def cancel_job(self, job: Job, *, actor_id: int) -> Job:
        """Cancel and refund a job, delete it at the provider, and show the final card. The card is
        edited in the background: the caller must answer its interaction within 3 seconds."""
        cancelled = await self.jobs.cancel(job.id, actor_id=actor_id)
        if cancelled is None:
            current = await self.store.get_job(job.id) or job
            raise UserError(cancel_refusal(current))
        self.tracker.cancel_at_provider(cancelled)
        task = asyncio.create_task(self.presenter.job_failed(cancelled), name=f"show-cancel-{job.id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return cancelled

    def command_tree_hash(self) -> str:
        payload = sorted(
            (command.to_dict(self.tree) for command in self.tree.get_commands()), key=lambda c: c["name"]
        )
        blob = json.dumps({"application": self.application_id, "commands": payload}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    async def sync_commands_if_changed(self) -> bool:
        """Sync only when the definitions changed, so restarts don't spend the sync rate limit."""
        digest = self.command_tree_hash()
        if await self.store.get_meta(COMMAND_HASH_KEY) == digest:
            log.info("application commands unchanged; not syncing")
            return False
        synced = await self.tree.sync()
        await self.store.set_meta(COMMAND_HASH_KEY, digest)
        log.info("synced %d application commands", len(synced))
        return True

    async def on_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        """One place that turns errors into replies: a user error shows its message; anything else
        gets a short apology with a reference the admin can find in the log."""
        original = getattr(error, "original", error)
        if isinstance(original, UserError):
            text = original.user_message
        elif isinstance(error, app_commands.NoPrivateMessage):
            text = "This command works in servers only, not in direct messages."
        elif isinstance(error, app_commands.CheckFailure):
            text = str(error) or "You don't have permission to use this command."
        else:
            reference = uuid.uuid4().hex[:8]
            log.error("command failed (ref %s)", reference, exc_info=original)
            text = (
                f"Something went wrong on the bot's side (reference `{reference}`). "
                "You are only ever charged for videos you receive."
            )
        await respond_ephemeral(interaction, text)


async def respond_ephemeral(interaction: discord.Interaction[Any], text: str) -> None:
    """Answer with ``response`` or ``followup`` depending on whether the interaction was acknowledged."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as exc:
        log.warning("could not send an error reply: %s", exc)
