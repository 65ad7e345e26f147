"""The whole bot as ``videobot run`` wires it, in the test's own event loop.

``InProcessBot`` has the interface of the end-to-end ``BotProcess`` (``env``, ``start``, ``stop``,
``database``, ``workdir``, ``log``, ``wait_log``) and does what ``bot.cli.run_bot`` does: settings
parsed from the same environment variables, the SQLite store, the Videos API client, media links,
the composition root (``bot.app.build_bot``), the HTTP server when ``HTTP_PORT`` is set, and a real
gateway connection to the fake Discord (identify, READY, GUILD_CREATE, interactions over the
websocket), commands synced in ``setup_hook``. What it leaves out is the process itself: no
interpreter start (about a second of CPU per start), no signal handlers (``stop`` closes the bot
as the SIGTERM handler does) and no log configuration (records are collected from the loggers).

So a test whose subject is what members see — cogs, views, the presenter, delivery, the tracker —
runs here at a fraction of an end-to-end test's cost. Restarts, crashes, the command line, logging
to a file, memory of the process and secrets in its log stay in ``tests/e2e/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from bot.localapi import LocalRenderer
from tests.fakes.discord import FakeDiscord, patched_discord
from tests.helpers import wait_for

COMMANDS_ROUTE = "/applications/{application_id}/commands"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Servers the test runs beside the bot log to the same loggers in this process; they are not the bot.
NOT_THE_BOT = ("tests.", "bot.localapi")


class _Collector(logging.Handler):
    """The bot's log as ``videobot run`` would write it: formatted lines, tracebacks included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(NOT_THE_BOT):
            return
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _root_level(level: str) -> Iterator[None]:
    root = logging.getLogger()
    saved = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(saved)


@dataclass
class InProcessBot:
    """One run of the bot in this event loop. ``start`` waits until it is connected and its commands
    are synced, like ``BotProcess.start``."""

    fake: FakeDiscord
    renderer: LocalRenderer
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    starts: int = 0
    task: asyncio.Task[None] | None = None
    _stopping: asyncio.Event | None = None
    _collector: _Collector = field(default_factory=_Collector)

    @property
    def database(self) -> Path:
        return self.workdir / "data" / "videobot.db"

    def environment(self) -> dict[str, str]:
        """The variables ``BotProcess`` starts ``videobot run`` with (see tests/e2e/conftest.py)."""
        env = {
            "DISCORD_TOKEN": self.fake.token,
            "DISCORD_API_BASE_URL": self.fake.api_base,
            "DISCORD_GATEWAY_URL": self.fake.gateway_url,
            "VIDEO_API_BASE_URL": self.renderer.base_url,
            "DATABASE_URL": f"sqlite:///{self.database}",
            "DATA_DIR": str(self.workdir / "data"),
            "POLL_INTERVAL_SECONDS": "1",
            "LOCAL_RENDER_FPS": "6",
            "PROGRESS_EDIT_INTERVAL_SECONDS": "0.2",
            "LOG_LEVEL": "INFO",
        }
        env.update(self.env)
        return env

    def settings(self):  # type: ignore[no-untyped-def]
        """``Settings`` read from ``environment()`` alone, as the process would read them."""
        from bot.settings import Settings

        with mock.patch.dict(os.environ, self.environment(), clear=True):
            return Settings(_env_file=None)  # type: ignore[call-arg]

    async def _run(self, connected: asyncio.Future[None]) -> None:
        """``bot.cli.run_bot`` without the signal handlers: runs until ``stop``."""
        from bot.adapters.http.links import MediaLinks
        from bot.adapters.sqlite.store import Store
        from bot.app import build_bot, serve_bot_http
        from bot.cli import SHUTDOWN_GRACE_SECONDS, video_api
        from bot.discord.bot import point_discord_at
        from bot.domain.catalog import load_catalog
        from bot.services.retention import make_private_dir

        settings = self.settings()
        token = settings.require_token()
        catalog = load_catalog(settings.models_file)
        point_discord_at(settings.discord_api_base_url, settings.discord_gateway_url)
        make_private_dir(settings.data_dir)
        assert self._stopping is not None
        async with Store.open(settings.database_path) as store, video_api(settings) as api:
            links = None
            if settings.public_base_url and settings.http_port is not None:
                links = await MediaLinks.load(store, settings.public_base_url)
            bot = build_bot(settings, store=store, api=api, catalog=catalog, media_links=links)
            async with bot, serve_bot_http(settings, bot, store, links=links):
                runner = asyncio.create_task(bot.start(token.get_secret_value()), name="discord")
                stopper = asyncio.create_task(self._stopping.wait(), name="stop")
                connected.set_result(None)
                done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    logging.getLogger("videobot").info("shutting down")
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(SHUTDOWN_GRACE_SECONDS):
                            await bot.close()
                stopper.cancel()
                failure = runner.exception() if runner.done() and not runner.cancelled() else None
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await runner
                if failure is not None:
                    raise failure

    async def start(self, *, expect_sync: bool = True, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        assert self.task is None or self.task.done(), "already running"
        mark = self.fake.mark()
        identified = self.fake.identify_count
        self.starts += 1
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        connected: asyncio.Future[None] = loop.create_future()
        self.task = asyncio.create_task(self._run(connected), name=f"bot-{self.starts}")
        self.task.add_done_callback(lambda t: connected.done() or connected.set_result(None))

        def identified_or_exited() -> bool:
            if self.task is not None and self.task.done():
                raise AssertionError(f"the bot stopped early:\n{self.log()}") from self.task.exception()
            return self.fake.identify_count > identified

        await wait_for(identified_or_exited, "the bot to identify on the gateway", timeout=timeout)
        if expect_sync:
            await self.fake.wait_for_request(
                lambda r: r.method == "PUT" and r.route == COMMANDS_ROUTE, timeout=timeout, since=mark
            )
        await self.wait_log("tracker", timeout=timeout)

    async def wait_log(self, text: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        def logged() -> bool:
            if text in self.log():
                return True
            if self.task is not None and self.task.done():
                raise AssertionError(f"the bot stopped:\n{self.log()}")
            return False

        await wait_for(logged, f"{text!r} in the bot's log", timeout=timeout, interval=0.02)

    def log(self) -> str:
        return "\n".join(self._collector.lines)

    async def stop(self, timeout: float = 15.0) -> int:  # noqa: ASYNC109
        """Close the bot as SIGTERM does; 0 when it shut down cleanly (the process's exit code)."""
        if self.task is None or self.task.done():
            return 0 if self.task is None or self.task.exception() is None else 1
        assert self._stopping is not None
        self._stopping.set()
        async with asyncio.timeout(timeout):
            await asyncio.wait({self.task})
        return 0 if self.task.exception() is None else 1

    @contextlib.asynccontextmanager
    async def running_context(self):  # type: ignore[no-untyped-def]
        """What the ``bot`` fixture wraps every test in: discord.py pointed at the fake, the bot's
        loggers collected at ``LOG_LEVEL``; at the end the bot is stopped and its log checked as the
        end-to-end fixture checks the process's log."""
        root = logging.getLogger()
        root.addHandler(self._collector)
        try:
            with patched_discord(self.fake), _root_level(self.environment().get("LOG_LEVEL", "INFO").upper()):
                try:
                    yield self
                finally:
                    with contextlib.suppress(TimeoutError):
                        await self.stop()
                    if self.task is not None and not self.task.done():
                        self.task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await self.task
        finally:
            root.removeHandler(self._collector)
        log = self.log()
        for line in log.splitlines():
            assert "Traceback" not in line, log
        assert self.fake.token not in log
