"""The naive baseline: what the provider documentation's example does, wrapped in a discord.py bot.

For each ``/video`` it defers, creates the job, then polls ``GET /videos/{id}`` every second and edits
the reply on every poll until the job ends, then downloads the whole MP4 into memory and uploads it.
No store, no credits, no batching, no throttling: one task per job, talking to both APIs as fast as
the example does. It is deliberately NOT good code to copy; ``bench/run.py`` runs it under the same
conditions as the real bot so the difference can be measured.

Configuration (environment): ``DISCORD_TOKEN``, ``DISCORD_API_BASE_URL``, ``DISCORD_GATEWAY_URL``,
``VIDEO_API_BASE_URL``, optional ``NAIVE_POLL_SECONDS`` (default 1).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands

log = logging.getLogger("naive-bot")

NO_MENTIONS = discord.AllowedMentions.none()


class NaiveBot(discord.Client):
    def __init__(self, api_base_url: str, poll_seconds: float) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(intents=intents, allowed_mentions=NO_MENTIONS)
        self.api_base_url = api_base_url.rstrip("/")
        self.poll_seconds = poll_seconds
        self.tree = app_commands.CommandTree(self)
        self.videos: aiohttp.ClientSession | None = None
        self._register_commands()

    async def setup_hook(self) -> None:
        self.videos = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        await self.tree.sync()

    async def close(self) -> None:
        if self.videos is not None:
            await self.videos.close()
        await super().close()

    def _register_commands(self) -> None:
        bot = self

        @self.tree.command(name="video", description="Generate a video (naive baseline)")
        async def video(
            interaction: discord.Interaction,
            prompt: str,
            seconds: int = 4,
            size: str = "720x1280",
            model: str = "sora-2",
        ) -> None:
            await bot.generate(interaction, prompt=prompt, seconds=seconds, size=size, model=model)

    async def generate(
        self, interaction: discord.Interaction, *, prompt: str, seconds: int, size: str, model: str
    ) -> None:
        assert self.videos is not None
        await interaction.response.defer(thinking=True)
        body = {"model": model, "prompt": prompt, "seconds": str(seconds), "size": size}
        async with self.videos.post(f"{self.api_base_url}/videos", json=body) as resp:
            video: dict[str, Any] = await resp.json()
        if resp.status >= 400:
            await interaction.edit_original_response(content=f"Failed: {video.get('error')}")
            return
        video_id = video["id"]
        # The documentation's loop: poll every second, show every answer.
        while video.get("status") in ("queued", "in_progress"):
            await asyncio.sleep(self.poll_seconds)
            async with self.videos.get(f"{self.api_base_url}/videos/{video_id}") as resp:
                if resp.status >= 400:
                    continue
                video = await resp.json()
            progress = video.get("progress") or 0
            try:
                await interaction.edit_original_response(content=f"{video.get('status')}: {progress}%")
            except discord.HTTPException as exc:
                log.warning("progress edit failed: %s", exc)
        if video.get("status") != "completed":
            await interaction.edit_original_response(content=f"Failed: {video.get('error')}")
            return
        async with self.videos.get(f"{self.api_base_url}/videos/{video_id}/content") as resp:
            data = await resp.read()  # the whole file in memory, as in the example
        await interaction.edit_original_response(
            content="Done!", attachments=[discord.File(io.BytesIO(data), filename=f"{video_id}.mp4")]
        )


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    # Point discord.py at the fake Discord (what bot.discord.bot.point_discord_at does for the real bot).
    discord.http.Route.BASE = os.environ["DISCORD_API_BASE_URL"].rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DISCORD_GATEWAY_URL"])
    bot = NaiveBot(os.environ["VIDEO_API_BASE_URL"], float(os.environ.get("NAIVE_POLL_SECONDS", "1")))
    bot.run(os.environ["DISCORD_TOKEN"], log_handler=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
