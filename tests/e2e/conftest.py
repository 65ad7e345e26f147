"""End-to-end harness: the real bot process (``python -m bot run``) against the fake Discord and the
local renderer, both running in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.localapi import LocalRenderer, LocalRendererConfig
from tests.fakes.discord import FakeDiscord
from tests.flows import embed_of, field_value, is_final, mp4_uploads, provider_saw_prompt
from tests.helpers import wait_for

__all__ = [
    "E2E_RENDERER",
    "HELD",
    "BotProcess",
    "embed_of",
    "eventually",
    "field_value",
    "hold",
    "is_final",
    "mp4_uploads",
    "provider_saw_prompt",
    "release",
    "renderer_config",
]

REPO = Path(__file__).resolve().parents[2]
COMMANDS_ROUTE = "/applications/{application_id}/commands"


@dataclass
class BotProcess:
    """One run of the bot. ``start`` waits until it is connected and its commands are synced."""

    fake: FakeDiscord
    renderer: LocalRenderer
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    log_path: Path | None = None
    starts: int = 0

    @property
    def database(self) -> Path:
        return self.workdir / "data" / "videobot.db"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "VIDEO_API", "OPENAI_"))}
        env.update(
            {
                "DISCORD_TOKEN": self.fake.token,
                "DISCORD_API_BASE_URL": self.fake.api_base,
                "DISCORD_GATEWAY_URL": self.fake.gateway_url,
                "VIDEO_API_BASE_URL": self.renderer.base_url,
                "DATABASE_URL": f"sqlite:///{self.database}",
                "DATA_DIR": str(self.workdir / "data"),
                "POLL_INTERVAL_SECONDS": "1",
                "LOCAL_RENDER_FPS": "6",  # for bots that render in-process (the default provider)
                "PROGRESS_EDIT_INTERVAL_SECONDS": "0.2",
                "LOG_LEVEL": "INFO",
                "PYTHONPATH": str(REPO),
            }
        )
        env.update(self.env)
        return env

    async def start(self, *, expect_sync: bool = True, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        mark = self.fake.mark()
        identified = self.fake.identify_count
        self.starts += 1
        self.log_path = self.workdir / f"bot-{self.starts}.log"
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.launcher" if "VIDEOBOT_CRASH_AT" in self.env else "bot",
                "run",
                cwd=self.workdir,
                env=self.environment(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        async with asyncio.timeout(timeout):
            while self.fake.identify_count == identified:
                waiter = asyncio.ensure_future(self.fake.wait_connected(timeout=timeout))
                exited = asyncio.ensure_future(self.proc.wait())
                done, _ = await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                exited.cancel()
                if exited in done:
                    raise AssertionError(f"the bot exited early:\n{self.log()}")
        if expect_sync:
            await self.fake.wait_for_request(
                lambda r: r.method == "PUT" and r.route == COMMANDS_ROUTE, timeout=timeout, since=mark
            )
        await self.wait_log("tracker", timeout=timeout)

    async def wait_log(self, text: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait for a line in the bot's log. Polls the file: the process is outside this loop."""

        def logged() -> bool:
            if text in self.log():
                return True
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"the bot exited:\n{self.log()}")
            return False

        await wait_for(logged, f"{text!r} in the bot's log", timeout=timeout, interval=0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:  # noqa: ASYNC109
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
        return code


E2E_RENDERER: dict[str, Any] = {
    "generation_seconds": 1.0,
    "queue_seconds": 0.2,
    "fps": 6,  # frames cost CPU; durations, sizes and progress do not depend on them
    "poll_after_ms": 200,
}
HELD = 3600.0
"""``generation_seconds`` for a render that only finishes when the test calls ``release``."""


@pytest.fixture
def renderer_settings() -> dict[str, Any]:
    """A render takes a second: long enough for the bot to show progress."""
    return dict(E2E_RENDERER)


def renderer_config(tmp_path: Path, **changes: Any) -> LocalRendererConfig:
    """The e2e renderer's configuration with changes, for tests that start a renderer of their own
    (overriding ``renderer_settings`` is the simpler way)."""
    return LocalRendererConfig(**{**E2E_RENDERER, "data_dir": tmp_path / "renderer", **changes})


async def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """The name these tests used before ``tests.helpers.wait_for``; kept for tests written with it."""
    await wait_for(check, what, timeout=timeout)


def hold(renderer: LocalRenderer) -> None:
    """Renders stay in progress until ``release``: for tests that act while a job is mid-render."""
    renderer.config.generation_seconds = HELD


def release(renderer: LocalRenderer) -> None:
    """Finish held renders now rather than after a guessed sleep: the renderer measures every job
    against the current ``generation_seconds``, so jobs older than that complete at once."""
    renderer.config.generation_seconds = E2E_RENDERER["generation_seconds"]


@pytest.fixture
async def bot(fake: FakeDiscord, renderer: LocalRenderer, tmp_path: Path) -> AsyncIterator[BotProcess]:
    process = BotProcess(fake=fake, renderer=renderer, workdir=tmp_path)
    yield process
    with contextlib.suppress(TimeoutError, ProcessLookupError):
        await process.stop()
    if process.proc is not None and process.proc.returncode is None:
        process.proc.kill()
        await process.proc.wait()
    for line in process.log().splitlines():
        assert "Traceback" not in line, process.log()
    assert process.fake.token not in process.log()
