"""The discord.py Bot: takes its services from the composition root, loads the cogs, answers errors."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.discord.cogs.credits import CreditsCog
from bot.discord.cogs.history import HistoryCog
from bot.discord.cogs.jobs import JobButtonsCog
from bot.discord.cogs.lineage import LineageCog
from bot.discord.cogs.video import VideoCog
from bot.discord.errors import answer_error
from bot.discord.mentions import NO_MENTIONS
from bot.discord.presenter import DiscordPresenter
from bot.discord.scheduler import DiscordLimits, WriteScheduler
from bot.discord.starter import JobStarter
from bot.discord.views import DYNAMIC_ITEMS, JobButtons
from bot.domain.catalog import Catalog
from bot.services.clips import EditClips
from bot.services.credits import CreditsService
from bot.services.delivery import DeliveryPlanner
from bot.services.history import HistoryService
from bot.services.jobs import JobService
from bot.services.lifecycle import JobLifecycle
from bot.services.ports import JobPresenter
from bot.services.references import ReferenceImages
from bot.services.tracker import JobTracker
from bot.services.wakeups import FleetWakeups
from bot.settings import Settings

log = logging.getLogger(__name__)

COMMAND_HASH_KEY = "command_tree_hash"


def point_discord_at(api_base_url: str, gateway_url: str) -> None:
    """Send discord.py's REST calls and gateway connection to the configured bases (a proxy, or the
    fake Discord in tests). discord.py reads both from class attributes."""
    discord.http.Route.BASE = api_base_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class BotStore(Protocol):
    """What the bot itself reads and writes: the hash of the synced command tree, and a ping for
    ``/healthz``. Everything else reaches the store through the services."""

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...

    async def swap_meta(self, key: str, value: str) -> str | None:
        """Set ``key`` to ``value`` atomically and return what it was (None: unset). Two processes
        swapping in the same value: only the first sees an older one."""
        ...

    async def ping(self) -> bool: ...


class VideoBot(commands.AutoShardedBot):
    """Everything it works with is handed in by the composition root (``bot.app``); the one thing
    made here is the Discord presenter (it needs this client), and with it the tracker, from
    ``tracker_for``.

    Sharded from the start (``SHARD_COUNT``, default 1): this process connects ``SHARD_IDS`` of them
    (default all); several processes, each with its own shards, share one database."""

    def __init__(
        self,
        *,
        settings: Settings,
        catalog: Catalog,
        store: BotStore,
        jobs: JobService,
        credits: CreditsService,
        history: HistoryService,
        lifecycle: JobLifecycle,
        delivery: DeliveryPlanner,
        tracker_for: Callable[[JobPresenter], JobTracker],
        references: ReferenceImages,
        clips: EditClips | None = None,
        wakeups: FleetWakeups | None = None,
        close_with: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        # The bot never joins voice: discord.py's start-up warnings about voice libraries are noise.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True  # channels and roles; interactions carry the member, so no members intent
        # Plans every message write within Discord's buckets; learns them from discord.py's answers.
        # Several processes of one token share Discord's global bucket: each plans with its share.
        scheduler = WriteScheduler(DiscordLimits().shared(settings.fleet_share))
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=NO_MENTIONS,
            help_command=None,
            chunk_guilds_at_startup=False,
            shard_count=settings.shard_count,
            shard_ids=settings.shards,
            http_trace=scheduler.trace_config(),
        )
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.jobs = jobs
        self.credits = credits
        self.history = history
        self.lifecycle = lifecycle
        self.references = references
        self.clips = clips  # members' clips for /edit
        # What the composition root made for this bot (the attachment session, the image gate),
        # closed after it.
        self._close_with = tuple(close_with)
        self.presenter = DiscordPresenter(
            self,
            jobs.store,  # reads jobs (a remix's source) to render cards
            lifecycle,
            catalog,
            delivery=delivery,
            views=JobButtons(offers=jobs.offers),
            demo_render=settings.uses_local_api,
            edit_interval=settings.progress_edit_interval_seconds,
            scheduler=scheduler,
        )
        self.tracker = tracker_for(self.presenter)
        # Webhooks and other wake-ups reach the process working the job (``bot.services.wakeups``).
        if wakeups is None:
            wakeups = FleetWakeups()
            wakeups.deliver_to(self.tracker.wake, self.tracker.notify_video_event)
        self.wakeups = wakeups
        self.starter = JobStarter(jobs, self.presenter)
        self._closed_parts = False
        self.tree.error(self.on_app_command_error)

    async def setup_hook(self) -> None:
        await self.add_cog(VideoCog(self))
        await self.add_cog(CreditsCog(self))
        await self.add_cog(JobButtonsCog(self))
        await self.add_cog(HistoryCog(self))
        await self.add_cog(LineageCog(self))
        # Buttons parse their state from custom_id, so messages from earlier runs keep working.
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        await self.sync_commands_if_changed()
        self.tracker.start()  # resumes every unfinished job from the store
        # What start-up made (modules, the command tree, the catalog, the clients) lives as long as
        # the process: frozen out of the cyclic garbage collector, a full collection walks only
        # what the running bot made since. Unfrozen, each one held the event loop for 60-80 ms with
        # 1,000 jobs in flight, which members saw as late acknowledgements.
        gc.freeze()

    async def close(self) -> None:
        # Each part is closed even when one before it fails; a second close (``async with bot``
        # after a timed-out shutdown) finds nothing left to do. The tracker closes the lifecycle.
        if self._closed_parts:
            return
        self._closed_parts = True
        try:
            await self.tracker.stop()
        finally:
            try:
                await self.presenter.close()
            finally:
                try:
                    await super().close()
                finally:
                    for close in self._close_with:
                        await close()

    def command_tree_hash(self) -> str:
        payload = sorted(
            (command.to_dict(self.tree) for command in self.tree.get_commands()), key=lambda c: c["name"]
        )
        blob = json.dumps({"application": self.application_id, "commands": payload}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    async def sync_commands_if_changed(self) -> bool:
        """Sync only when the definitions changed, so restarts don't spend the sync rate limit, and
        once per fleet: the hash lives in the shared database and is swapped in before syncing, so
        of several processes starting with the same commands only the first syncs."""
        digest = self.command_tree_hash()
        previous = await self.store.swap_meta(COMMAND_HASH_KEY, digest)
        if previous == digest:
            log.info("application commands unchanged; not syncing")
            return False
        try:
            synced = await self.tree.sync()
        except BaseException:
            # Not synced after all: the next start (of any process) tries again.
            await self.store.swap_meta(COMMAND_HASH_KEY, previous or "")
            raise
        log.info("synced %d application commands", len(synced))
        return True

    def shard_health(self) -> list[dict[str, Any]]:
        """Each of this process's shards for ``/healthz``: connected now, and its heartbeat latency."""
        report = []
        for shard_id in self.settings.shards:
            shard = self.get_shard(shard_id)
            connected = shard is not None and not shard.is_closed() and not self.is_closed()
            latency = shard.latency if shard is not None else float("inf")
            report.append(
                {
                    "id": shard_id,
                    "connected": connected,
                    "latency_ms": round(latency * 1000, 1) if math.isfinite(latency) else None,
                }
            )
        return report

    async def on_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        await answer_error(interaction, error, what="command")
