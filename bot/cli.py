"""``videobot``: run | generate | local-api | check | invite | healthcheck."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.domain.catalog import Catalog, Quote, load_catalog
from bot.domain.errors import CatalogError, ConfigError, UserError
from bot.domain.jobs import Job, JobRequest, JobStatus
from bot.domain.provider_errors import AuthenticationError, UnsupportedEndpoint, VideoAPIError

# The rest is imported where a command needs it: `--help`, `--version` and configuration errors
# answer without loading discord.py, aiohttp, pydantic-settings and the store (most of a second).
if TYPE_CHECKING:
    from pydantic import SecretStr, ValidationError

    from bot.adapters.videoapi.client import VideoAPIClient
    from bot.settings import Settings

log = logging.getLogger("videobot")

SHUTDOWN_GRACE_SECONDS = 10.0
INVITE_PERMISSIONS = dict(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
)
"""The ``discord.Permissions`` the invite URL asks for."""
NEW_TOKEN_HINT = (
    "get a new one in the Discord Developer Portal (your app → Bot → Reset Token) and put it in .env"
)
Reporter = Callable[[bool, str, str], None]  # check's report(ok, what, detail)
# The local renderer finishes in seconds: poll it often so `generate` shows the percentage moving.
LOCAL_POLL_SECONDS = 1.0

_RUN_EPILOG = """\
reads from the environment or .env:
  DISCORD_TOKEN           the bot token (required)
  VIDEO_API_BASE_URL      the Videos API provider; unset = the built-in local renderer
                          (demo renders, no cost)
  VIDEO_API_KEY           the provider's key (falls back to OPENAI_API_KEY)
  MODELS_FILE             a TOML model catalog; unset = the built-in Sora 2 catalog
  DATABASE_URL, DATA_DIR  where jobs, credits and videos are kept (default data/)
  HTTP_PORT, HTTP_HOST    the bot's HTTP server for /healthz and webhooks (off unless HTTP_PORT is set)
  LOG_LEVEL               DEBUG, INFO (default), WARNING or ERROR, any case
  SHARD_COUNT, SHARD_IDS  gateway shards in all (default 1) and the ones this process connects
                          (comma-separated; default all)
  JOB_LEASE_SECONDS       how long a process owns a job without renewing (default 30)
.env.example lists every variable. Stop with Ctrl-C or SIGTERM; running jobs resume on the next start."""

_CHECK_EPILOG = """\
Checks DISCORD_TOKEN (asks Discord whether it accepts it), MODELS_FILE, WEBHOOK_SECRET, HTTP_PORT
with PUBLIC_BASE_URL, the database named by DATABASE_URL (read only: a missing file is reported, not
created) and the Videos API at VIDEO_API_BASE_URL with VIDEO_API_KEY. Prints one line per check and
exits 1 if any failed. Secrets are never printed."""

_MIGRATE_EPILOG = """\
Reads the SQLite file of DATABASE_URL (a running bot may keep using it: the copy is one consistent
snapshot) and writes everything in one PostgreSQL transaction, keeping job numbers. Refuses a target
that already holds rows, so nothing is overwritten. Then stop the bot, run the copy once more into a
fresh database if jobs changed meanwhile, and set DATABASE_URL to the PostgreSQL URL.
The password in --to is never printed."""

_HEALTHCHECK_EPILOG = """\
Asks GET http://127.0.0.1:$HTTP_PORT/healthz of a running `videobot run` (the Docker HEALTHCHECK).
Exits 0 when it answers 200, else 1, printing one line."""


def _version() -> str:
    try:
        return importlib.metadata.version("videobot")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="videobot",
        description="A self-hostable Discord bot that turns /video requests into generated videos. "
        "Configuration comes from the environment or .env (see .env.example).",
    )
    parser.add_argument("--version", action="version", version=f"videobot {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser(
        "run",
        help="connect to Discord and serve /video (needs DISCORD_TOKEN)",
        description="Connect to Discord and serve /video, /videomod and the job buttons until stopped.",
        epilog=_RUN_EPILOG,
        formatter_class=formatter,
    )

    gen = sub.add_parser(
        "generate",
        help="make one video from the terminal through the same pipeline (no Discord needed)",
        description="Make one video through the same pipeline as /video and write the MP4. Uses "
        "VIDEO_API_BASE_URL (unset: the built-in renderer), VIDEO_API_KEY and MODELS_FILE.",
        formatter_class=formatter,
    )
    gen.add_argument("prompt", help="what the video should show")
    gen.add_argument("--model", help="catalog model (default: the catalog's default)")
    gen.add_argument(
        "--seconds", type=int, help="duration in seconds, one the model offers (built-in: 4, 8 or 12)"
    )
    gen.add_argument("--size", help="WIDTHxHEIGHT the model offers, e.g. 720x1280")
    gen.add_argument("--image", type=Path, help="reference image (JPEG, PNG or WebP) for the first frame")
    gen.add_argument(
        "--out", type=Path, default=Path("video.mp4"), help="where to write the MP4 (default: video.mp4)"
    )
    gen.add_argument(
        "--timeout", type=float, default=3600, help="give up after this many seconds (default 3600)"
    )

    local = sub.add_parser(
        "local-api",
        help="serve the built-in local Videos API renderer (no provider needed)",
        description="Serve the built-in renderer as a Videos API over HTTP, for another bot or tool. "
        "Its files go to DATA_DIR/local-api.",
        formatter_class=formatter,
    )
    local.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1); any other address needs an API key",
    )
    local.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    local.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' on every request (default LOCAL_API_KEY; prefer "
        "that: a command line is visible to other users of the machine)",
    )
    local.add_argument(
        "--generation-seconds",
        type=float,
        default=None,
        help="how long each job takes (default LOCAL_GENERATION_SECONDS, 8)",
    )

    sub.add_parser(
        "check",
        help="validate the configuration and reach Discord and the Videos API (writes nothing)",
        description="Validate the configuration and reach Discord and the Videos API. Writes nothing.",
        epilog=_CHECK_EPILOG,
        formatter_class=formatter,
    )
    invite = sub.add_parser(
        "invite",
        help="print the URL that adds the bot to a server",
        description="Print the URL that adds the bot to a server, with the permissions it needs.",
        formatter_class=formatter,
    )
    invite.add_argument(
        "--client-id", type=int, help="the application id (default: asked of Discord with DISCORD_TOKEN)"
    )
    migrate = sub.add_parser(
        "migrate-db",
        help="copy this installation's SQLite database into an empty PostgreSQL database",
        description="Copy the SQLite database named by DATABASE_URL (jobs, credits, settings, grants, "
        "the audit log and the rest) into an empty PostgreSQL database.",
        epilog=_MIGRATE_EPILOG,
        formatter_class=formatter,
    )
    migrate.add_argument(
        "--to",
        required=True,
        metavar="postgresql://USER:PASSWORD@HOST:PORT/DB",
        help="the target database; it is migrated first and must hold no rows",
    )
    health = sub.add_parser(
        "healthcheck",
        help="exit 0 if a running bot's /healthz answers 200 (for Docker)",
        description="Check a running bot's HTTP server (needs HTTP_PORT).",
        epilog=_HEALTHCHECK_EPILOG,
        formatter_class=formatter,
    )
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from bot.settings import Settings, redact_urls

    # Docker reserves exit code 2 in health checks: any failure of `healthcheck` is "unhealthy" (1).
    usage_error = 1 if args.command == "healthcheck" else 2
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"Configuration error:\n{_describe_validation(exc)}", file=sys.stderr)
        return usage_error
    args.status_line = configure_logging(settings)
    handlers = {
        "run": run_bot,
        "generate": generate,
        "local-api": serve_local_api,
        "check": check,
        "invite": invite,
        "healthcheck": healthcheck,
        "migrate-db": migrate_db,
    }
    try:
        return asyncio.run(handlers[args.command](settings, args))
    except (ConfigError, CatalogError, UserError) as exc:
        message = exc.user_message if isinstance(exc, UserError) else str(exc)
        args.status_line.end()
        print(f"error: {redact_urls(message)}", file=sys.stderr)
        return usage_error
    except KeyboardInterrupt:
        return 130


def _describe_validation(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]).upper()
        lines.append(f"  {name}: {error['msg']}")  # never echo the input: it may be a secret
    return "\n".join(lines)


# --------------------------------------------------------------------------- logging and the terminal


class StatusLine:
    """The one line ``generate`` redraws in place on a terminal. Log records clear it first and
    redraw it after, so a record never lands in the middle of the bar. Off a terminal (a pipe, a CI
    log) nothing is redrawn: each change is a line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.redraws = stream.isatty()
        self.lock = threading.RLock()  # aiosqlite and the renderer's threads log too
        self._text = ""
        self._shown = False
        self._last_line = ""

    def show(self, text: str, *, key: str | None = None) -> None:
        """Show ``text``; off a terminal, print it only when ``key`` (what matters in it) changed."""
        with self.lock:
            self._text = text
            if self.redraws:
                self.stream.write("\r\x1b[K" + text)
                self._shown = True
            elif (key or text) != self._last_line:
                self._last_line = key or text
                self.stream.write(text + "\n")
            self.stream.flush()

    def end(self, text: str | None = None) -> None:
        """Finish the line (with ``text``, if given); later output starts on a fresh line."""
        with self.lock:
            if self.redraws and self._shown:
                self.stream.write("\r\x1b[K")
            if text is not None:
                self.stream.write(text + "\n")
            self._text, self._shown = "", False
            self.stream.flush()

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def redraw(self) -> None:
        if self.redraws and self._text:
            self.stream.write(self._text)
            self.stream.flush()
            self._shown = True


class _LogHandler(logging.StreamHandler):
    """stderr logging that steps around the status line and strips credentials from URLs."""

    def __init__(self, status: StatusLine) -> None:
        super().__init__(status.stream)
        self.status = status

    def format(self, record: logging.LogRecord) -> str:
        from bot.settings import redact_urls

        return redact_urls(super().format(record))

    def emit(self, record: logging.LogRecord) -> None:
        with self.status.lock:
            self.status.clear()
            super().emit(record)
            self.status.redraw()


def configure_logging(settings: Settings) -> StatusLine:
    from bot.logsafety import install_redaction

    status = StatusLine(sys.stderr)
    handler = _LogHandler(status)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # One redacting filter over every record: tokens, keys, secrets and URL credentials never reach
    # the log, at any level (bot.logsafety).
    install_redaction(
        [
            settings.discord_token,
            settings.video_api_key,
            settings.openai_api_key,
            settings.webhook_secret,
            settings.local_api_key,
            settings.database_password,
        ]
    )
    return status


def describe_provider(settings: Settings) -> str:
    from bot.settings import redact_urls

    if settings.uses_local_api:
        return "the built-in local renderer (demo renders; set VIDEO_API_BASE_URL for a real provider)"
    return redact_urls(settings.video_api_base_url)


def describe_catalog(catalog: Catalog) -> str:
    names = ", ".join(m.name for m in catalog.models)
    where = "built-in catalog" if catalog.source == "built-in" else f"MODELS_FILE {catalog.source}"
    return f"{where} ({names})"


# --------------------------------------------------------------------------- the Videos API


@contextlib.asynccontextmanager
async def video_api(
    settings: Settings, *, max_attempts: int = 5, keep_files: bool = True
) -> AsyncIterator[VideoAPIClient]:
    """The Videos API client; with ``VIDEO_API_BASE_URL=local`` (the default) the built-in renderer
    runs in-process. ``keep_files=False`` gives the renderer a temporary directory (``check``)."""
    from pydantic import SecretStr

    from bot.adapters.videoapi.client import VideoAPIClient
    from bot.logsafety import register_secret

    async with contextlib.AsyncExitStack() as stack:
        base_url, key = settings.video_api_base_url, settings.api_key
        if settings.uses_local_api:
            from bot.localapi import LocalRenderer, LocalRendererConfig

            # The in-process renderer's access log would repeat every request the client makes.
            logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
            # A fresh key per process: other programs on the machine can reach the port, and only
            # this bot needs to talk to its renderer.
            local_key = secrets.token_urlsafe(32)
            register_secret(local_key)
            renderer = await stack.enter_async_context(
                LocalRenderer(
                    LocalRendererConfig(
                        generation_seconds=settings.local_generation_seconds,
                        fps=settings.local_render_fps,
                        data_dir=settings.data_dir / "local-api" if keep_files else None,
                        api_key=local_key,
                    )
                )
            )
            base_url, key = renderer.base_url, SecretStr(local_key)
            log.debug("local Videos API renderer at %s", base_url)
        client = await stack.enter_async_context(
            VideoAPIClient(
                base_url,
                key,
                max_attempts=max_attempts,
                requests_per_minute=settings.video_api_requests_per_minute,
                creates_per_minute=settings.video_api_creates_per_minute,
                max_download_bytes=settings.max_download_bytes,
            )
        )
        yield client


# --------------------------------------------------------------------------- run


def _discord_failure(exc: BaseException, settings: Settings) -> BaseException:
    """What a failed ``bot.start`` means for the admin, as one line (a ``ConfigError``)."""
    import aiohttp
    import discord

    from bot.settings import redact_urls

    base = redact_urls(settings.discord_api_base_url.rstrip("/"))
    if isinstance(exc, discord.LoginFailure):
        return ConfigError(f"Discord refused DISCORD_TOKEN: {NEW_TOKEN_HINT}.")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return ConfigError(
            f"cannot reach Discord at {base} ({reason}); check the network "
            "(and DISCORD_API_BASE_URL, if you set it)."
        )
    if isinstance(exc, discord.HTTPException):
        return ConfigError(f"Discord answered HTTP {exc.status} at login ({base}); try again later.")
    if isinstance(exc, aiohttp.ClientError | TimeoutError):
        return ConfigError(f"cannot reach Discord at {base} ({type(exc).__name__}); check the network.")
    return exc


async def run_bot(settings: Settings, args: argparse.Namespace) -> int:
    token = settings.require_token()
    catalog = load_catalog(settings.models_file)
    from bot.adapters.http.links import MediaLinks
    from bot.app import build_bot, open_store, serve_bot_http
    from bot.discord.bot import point_discord_at
    from bot.services.retention import make_private_dir

    log.info("videos from %s; %s", describe_provider(settings), describe_catalog(catalog))
    point_discord_at(settings.discord_api_base_url, settings.discord_gateway_url)
    make_private_dir(settings.data_dir)  # owner-only: tokens, prompts and members' images live there
    async with open_store(settings) as store, video_api(settings) as api:
        log.info("database: %s", store.describe())
        links = None
        if settings.public_base_url and settings.http_port is not None:
            # Videos too large for Discord even after re-encoding are linked, served by our server.
            links = await MediaLinks.load(store, settings.public_base_url)
        bot = build_bot(settings, store=store, api=api, catalog=catalog, media_links=links)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stopping.set)
        # The HTTP server (webhooks, /healthz) starts before the gateway and stops before the bot closes.
        async with bot, serve_bot_http(settings, bot, store, links=links):
            runner = asyncio.create_task(bot.start(token.get_secret_value()), name="discord")
            stopper = asyncio.create_task(stopping.wait(), name="signal")
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                log.info("shutting down")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SHUTDOWN_GRACE_SECONDS):
                        await bot.close()
            stopper.cancel()
            # A start that failed (refused token, Discord unreachable) is read here, not re-raised
            # by awaiting the task: the admin gets one line, not a traceback.
            failure = runner.exception() if runner.done() and not runner.cancelled() else None
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
            if failure is not None:
                raise _discord_failure(failure, settings)
    return 0


# --------------------------------------------------------------------------- generate


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class TerminalPresenter:
    """``videobot generate``'s presenter: a progress line on stderr (the provider's percentage, the
    job's state, the time so far), the MP4 copied to ``--out``."""

    def __init__(self, out: Path, status: StatusLine | None = None) -> None:
        self.out = out
        self.status = status or StatusLine(sys.stderr)
        self.failure: str | None = None
        self.started = time.monotonic()
        self.latest: Job | None = None

    def line(self, job: Job) -> tuple[str, str]:
        """The progress line and the part of it that matters off a terminal (not the clock)."""
        from bot.discord.embeds import progress_bar

        what = f"{progress_bar(job.progress)}  {job.status.label}"
        return f"{what}  {_elapsed(time.monotonic() - self.started)}", what

    def tick(self) -> None:
        """Redraw with the time so far (a terminal only; the clock alone is not worth a new line)."""
        if self.latest is not None and self.status.redraws:
            self.status.show(self.line(self.latest)[0])

    async def job_changed(self, job: Job) -> None:
        self.latest = job
        text, key = self.line(job)
        self.status.show(text, key=key)

    async def deliver(self, job: Job, media: Path) -> int | None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copyfile, media, self.out)
        self.latest = None
        took = _elapsed(time.monotonic() - self.started)
        from bot.discord.embeds import progress_bar

        self.status.end(f"{progress_bar(100)}  Done in {took}")
        return job.id

    async def job_failed(self, job: Job) -> None:
        self.failure = job.error_message or "the video could not be made"
        self.latest = None
        self.status.end()

    async def find_delivery(self, job: Job) -> int | None:
        return job.id if self.out.exists() else None


def check_output_path(out: Path) -> None:
    """Refuse an ``--out`` that could not be written, before any time or money is spent."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name the file, e.g. --out {out / 'video.mp4'}")
    parent = out.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UserError(f"--out {out}: not writable (permission denied)")


def _price(quote: Quote, settings: Settings) -> str:
    summary = f"{quote.model} · {quote.size} · {quote.seconds} s · {quote.credits} credits"
    if settings.uses_local_api:
        return f"{summary} · built-in renderer (a demo render, no cost)"
    return f"{summary} (~${quote.usd:.2f})" if quote.usd > 0 else summary


async def generate(settings: Settings, args: argparse.Namespace) -> int:
    from bot.services.jobs import clean_prompt

    catalog: Catalog = load_catalog(settings.models_file)
    quote = catalog.quote(args.model, args.size, args.seconds)
    prompt = clean_prompt(args.prompt)
    check_output_path(args.out)
    from bot.adapters.media import fit_image, sniff_image
    from bot.adapters.sqlite.store import Store
    from bot.app import job_service, job_tracker

    status: StatusLine = getattr(args, "status_line", None) or StatusLine(sys.stderr)
    log.info("videos from %s; %s", describe_provider(settings), describe_catalog(catalog))
    with tempfile.TemporaryDirectory(prefix="videobot-") as tmp:
        workdir = Path(tmp)
        reference: str | None = None
        if args.image is not None:
            try:
                data = args.image.read_bytes()
                sniff_image(data)
                fitted = fit_image(data, quote.width, quote.height)
            except OSError as exc:
                raise UserError(f"cannot read {args.image}: {exc.strerror}") from None
            (workdir / "reference.png").write_bytes(fitted)
            reference = str(workdir / "reference.png")
        poll = LOCAL_POLL_SECONDS if settings.uses_local_api else settings.poll_interval_seconds
        # The built-in renderer's files live only as long as this command: --out is all it writes.
        async with Store.open(workdir / "jobs.db") as store, video_api(settings, keep_files=False) as api:
            presenter = TerminalPresenter(args.out, status)
            tracker = job_tracker(store, api, presenter, workdir, poll_interval=poll)
            service = job_service(store)
            job = await service.submit(
                JobRequest.priced(
                    quote,
                    prompt=prompt,
                    guild_id=None,
                    channel_id=0,
                    user_id=0,
                    user_name="terminal",
                    reference_image_path=reference,
                )
            )
            print(_price(quote, settings), file=sys.stderr)
            await presenter.job_changed(job)
            ticker = asyncio.create_task(_tick(presenter), name="progress-clock")
            try:
                async with asyncio.timeout(args.timeout):
                    await tracker.run_until_idle()
            except TimeoutError:
                status.end(f"error: no result after {args.timeout:.0f} s")
                return 1
            finally:
                ticker.cancel()
                await tracker.stop()
            final = await store.get_job(job.id)
    if presenter.failure or final is None or final.status is not JobStatus.COMPLETED:
        print(f"error: {presenter.failure or 'the video could not be made'}", file=sys.stderr)
        return 1
    print(str(args.out))
    return 0


async def _tick(presenter: TerminalPresenter) -> None:
    while True:
        await asyncio.sleep(1.0)
        presenter.tick()


# --------------------------------------------------------------------------- local-api


async def serve_local_api(settings: Settings, args: argparse.Namespace) -> int:
    from pydantic import SecretStr

    from bot.localapi import LocalRendererConfig, serve_forever
    from bot.localapi.server import is_loopback, unprotected_host_message
    from bot.logsafety import register_secret

    generation = (
        args.generation_seconds if args.generation_seconds is not None else settings.local_generation_seconds
    )
    key = args.api_key if args.api_key is not None else settings.local_api_key
    api_key = (key.get_secret_value() if isinstance(key, SecretStr) else key) or None
    if api_key is None and not is_loopback(args.host):
        raise ConfigError(unprotected_host_message(args.host))
    register_secret(api_key)
    config = LocalRendererConfig(
        generation_seconds=generation,
        fps=settings.local_render_fps,
        data_dir=settings.data_dir / "local-api",
        api_key=api_key,
    )
    with contextlib.suppress(asyncio.CancelledError):
        await serve_forever(config, args.host, args.port)
    return 0


# --------------------------------------------------------------------------- check


async def check(settings: Settings, args: argparse.Namespace) -> int:
    """Print one line per check; exit 1 if any failed. Secrets are never printed; nothing is written."""
    from bot.adapters.sqlite.store import inspect_database
    from bot.settings import redact_urls

    problems = 0

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        print(f"[{'ok' if ok else 'FAIL'}] {what}: {redact_urls(detail)}")

    try:
        token: SecretStr | None = settings.require_token()
        report(True, "DISCORD_TOKEN", "set")
    except ConfigError as exc:
        token = None
        report(False, "DISCORD_TOKEN", str(exc))
    try:
        catalog = load_catalog(settings.models_file)
        report(True, "model catalog", describe_catalog(catalog))
    except CatalogError as exc:
        report(False, "model catalog", str(exc))
    if settings.webhook_secret is not None:
        from bot.adapters.http.server import verifier_for

        try:
            verifier_for(settings.webhook_secret)
            where = f"on port {settings.http_port}" if settings.http_port else "but HTTP_PORT is not set"
            report(settings.http_port is not None, "webhooks", f"WEBHOOK_SECRET is valid; receiving {where}")
        except ConfigError as exc:
            report(False, "webhooks", str(exc))
    if settings.public_base_url and settings.http_port is None:
        report(
            False,
            "download links",
            "PUBLIC_BASE_URL is set but HTTP_PORT is not: nothing would serve the links",
        )
    try:
        if settings.uses_postgres:
            from bot.adapters.postgres.store import inspect_postgres

            ok, detail = await inspect_postgres(settings.database_url)
        else:
            ok, detail = inspect_database(settings.database_path)
        report(ok, "database", detail)
    except ConfigError as exc:
        report(False, "database", str(exc))

    await _check_discord(settings, token, report)
    await _check_videos_api(settings, report)
    print("all checks passed" if problems == 0 else f"{problems} problem(s) found")
    return 0 if problems == 0 else 1


async def _check_discord(settings: Settings, token: SecretStr | None, report: Reporter) -> None:
    import aiohttp

    base = settings.discord_api_base_url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            if token is None:
                # Nothing to verify; whether Discord can be reached at all is still worth knowing.
                async with session.get(f"{base}/gateway"):
                    report(True, "Discord", f"{base} is reachable; the token was not checked: it is not set")
                return
            headers = {"Authorization": f"Bot {token.get_secret_value()}"}
            async with session.get(f"{base}/users/@me", headers=headers) as resp:
                if resp.status == 200:
                    user = await resp.json()
                    report(True, "Discord", f"{base} accepts the token (bot user {user.get('username')})")
                elif resp.status == 401:
                    report(False, "Discord", f"{base} refused DISCORD_TOKEN (401); {NEW_TOKEN_HINT}")
                else:
                    report(False, "Discord", f"{base} answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            report(False, "Discord", f"cannot reach {base}: {type(exc).__name__}")


async def _check_videos_api(settings: Settings, report: Reporter) -> None:
    if settings.uses_local_api:
        what = "the built-in local renderer"
        accepted = "starts and answers (no key needed; set VIDEO_API_BASE_URL for a real provider)"
    else:
        what = settings.video_api_base_url
        accepted = "answers and accepts the key" if settings.api_key else "answers without a key"
    try:
        async with video_api(settings, max_attempts=1, keep_files=False) as api:
            try:
                await api.list(limit=1)
                report(True, "Videos API", f"{what} {accepted}")
            except UnsupportedEndpoint:
                report(True, "Videos API", f"{what} answers (no list endpoint: single lookups will be used)")
            except AuthenticationError:
                why = "refused the key" if settings.api_key else "needs a key"
                report(False, "Videos API", f"{what} {why}; set VIDEO_API_KEY")
            except VideoAPIError as exc:
                report(False, "Videos API", f"{what}: {exc}")
    except OSError as exc:
        report(False, "Videos API", f"the local renderer failed to start: {exc}")


# --------------------------------------------------------------------------- invite


async def invite(settings: Settings, args: argparse.Namespace) -> int:
    import aiohttp
    import discord

    client_id = args.client_id
    if client_id is None:
        token = settings.require_token()
        base = settings.discord_api_base_url.rstrip("/")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            try:
                async with session.get(
                    f"{base}/oauth2/applications/@me",
                    headers={"Authorization": f"Bot {token.get_secret_value()}"},
                ) as resp:
                    if resp.status == 401:
                        raise ConfigError(f"Discord refused DISCORD_TOKEN: {NEW_TOKEN_HINT}.")
                    if resp.status != 200:
                        raise ConfigError(
                            f"Discord answered HTTP {resp.status} when asked for the application id; pass --client-id"
                        )
                    client_id = int((await resp.json())["id"])
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ConfigError(f"cannot reach Discord ({type(exc).__name__}); pass --client-id") from None
    url = discord.utils.oauth_url(
        client_id,
        permissions=discord.Permissions(**INVITE_PERMISSIONS),
        scopes=("bot", "applications.commands"),
    )
    print(url)
    return 0


# --------------------------------------------------------------------------- healthcheck


def _probe(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200, f"{url} answered HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        failing = ""
        with contextlib.suppress(ValueError, AttributeError, OSError):
            report = json.loads(exc.read())
            failing = ", ".join(part for part, ok in report.items() if ok is False)
        return False, f"{url} answered HTTP {exc.code}" + (f" (not ok: {failing})" if failing else "")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"cannot reach {url} ({getattr(reason, 'strerror', None) or reason})"


async def migrate_db(settings: Settings, args: argparse.Namespace) -> int:
    from bot.adapters.postgres.copy import TargetNotEmpty, copy_sqlite_to_postgres
    from bot.adapters.postgres.store import describe_url
    from bot.logsafety import register_secret
    from bot.settings import POSTGRES_SCHEMES, url_password

    target = str(args.to)
    register_secret(url_password(target))
    if not target.lower().startswith(POSTGRES_SCHEMES):
        raise ConfigError("--to must be a postgresql://USER:PASSWORD@HOST:PORT/DB URL")
    if settings.uses_postgres:
        raise ConfigError(
            "DATABASE_URL already names PostgreSQL; migrate-db copies from a SQLite DATABASE_URL"
        )
    source = settings.database_path
    if not source.exists():
        raise ConfigError(f"{source} does not exist: DATABASE_URL must name the SQLite file to copy")
    try:
        report = await copy_sqlite_to_postgres(source, target)
    except TargetNotEmpty as exc:
        raise ConfigError(str(exc)) from None
    for table, rows in report.rows.items():
        print(f"{table}: {rows} rows")
    for table, columns in report.skipped_columns.items():
        print(f"{table}: not in the PostgreSQL schema, not copied: {', '.join(columns)}")
    if report.skipped_tables:
        print(f"tables the PostgreSQL schema does not have, not copied: {', '.join(report.skipped_tables)}")
    print(f"copied {source} to PostgreSQL {describe_url(target)}; now set DATABASE_URL to it")
    return 0


async def healthcheck(settings: Settings, args: argparse.Namespace) -> int:
    if settings.http_port is None:
        print("unhealthy: HTTP_PORT is not set, so the bot serves no /healthz to check", file=sys.stderr)
        return 1
    host = settings.http_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    ok, detail = await asyncio.to_thread(_probe, f"http://{host}:{settings.http_port}/healthz", args.timeout)
    print(f"{'healthy' if ok else 'unhealthy'}: {detail}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
