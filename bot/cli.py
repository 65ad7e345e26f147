"""``videobot``: run | generate | local-api | check | invite."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import discord
from pydantic import SecretStr, ValidationError

from bot.adapters.sqlite.store import Store
from bot.adapters.videoapi.client import VideoAPIClient
from bot.discord.embeds import progress_bar
from bot.domain.catalog import Catalog, load_catalog
from bot.domain.errors import CatalogError, ConfigError, UserError
from bot.domain.jobs import Job, JobRequest
from bot.domain.provider_errors import AuthenticationError, UnsupportedEndpoint, VideoAPIError
from bot.services.jobs import JobService, clean_prompt
from bot.services.tracker import JobTracker
from bot.settings import Settings

log = logging.getLogger("videobot")

SHUTDOWN_GRACE_SECONDS = 10.0
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videobot",
        description="A self-hostable Discord bot that turns /video requests into generated videos. "
        "Configuration comes from the environment or .env (see .env.example).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("run", help="connect to Discord and serve /video (needs DISCORD_TOKEN)")

    gen = sub.add_parser(
        "generate",
        help="make one video from the terminal through the same pipeline (try VIDEO_API_BASE_URL=local)",
    )
    gen.add_argument("prompt", help="what the video should show")
    gen.add_argument("--model", help="catalog model (default: the catalog's default)")
    gen.add_argument("--seconds", type=int, help="duration in seconds, e.g. 4, 8 or 12")
    gen.add_argument("--size", help="WIDTHxHEIGHT, e.g. 720x1280")
    gen.add_argument("--image", type=Path, help="reference image (JPEG, PNG or WebP) for the first frame")
    gen.add_argument(
        "--out", type=Path, default=Path("video.mp4"), help="where to write the MP4 (default: video.mp4)"
    )
    gen.add_argument(
        "--timeout", type=float, default=3600, help="give up after this many seconds (default 3600)"
    )

    local = sub.add_parser(
        "local-api", help="serve the built-in local Videos API renderer (no provider needed)"
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
        help="how long each job takes (default LOCAL_GENERATION_SECONDS)",
    )

    sub.add_parser("check", help="validate the configuration and reach Discord and the Videos API")
    invite = sub.add_parser("invite", help="print the URL that adds the bot to a server")
    invite.add_argument(
        "--client-id", type=int, help="the application id (default: looked up with DISCORD_TOKEN)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"Configuration error:\n{_describe_validation(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # discord.py logs webhook URLs (which embed interaction tokens) at DEBUG: never let them through.
    logging.getLogger("discord.webhook").setLevel(max(logging.INFO, logging.getLogger().level))
    handlers = {
        "run": run_bot,
        "generate": generate,
        "local-api": serve_local_api,
        "check": check,
        "invite": invite,
    }
    try:
        return asyncio.run(handlers[args.command](settings, args))
    except (ConfigError, CatalogError, UserError) as exc:
        message = exc.user_message if isinstance(exc, UserError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _describe_validation(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]).upper()
        lines.append(f"  {name}: {error['msg']}")  # never echo the input: it may be a secret
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def video_api(settings: Settings, *, max_attempts: int = 5) -> AsyncIterator[VideoAPIClient]:
    """The Videos API client; with ``VIDEO_API_BASE_URL=local`` the built-in renderer runs in-process."""
    async with contextlib.AsyncExitStack() as stack:
        base_url, key = settings.video_api_base_url, settings.api_key
        if settings.uses_local_api:
            from bot.localapi.renderer import LocalRenderer, LocalRendererConfig

            # A fresh key per process: other programs on the machine can reach the port, and only
            # this bot needs to talk to its renderer.
            local_key = secrets.token_urlsafe(32)
            renderer = await stack.enter_async_context(
                LocalRenderer(
                    LocalRendererConfig(
                        generation_seconds=settings.local_generation_seconds,
                        data_dir=settings.data_dir / "local-api",
                        api_key=local_key,
                    )
                )
            )
            base_url, key = renderer.base_url, SecretStr(local_key)
            log.info("local Videos API renderer at %s", base_url)
        client = await stack.enter_async_context(
            VideoAPIClient(
                base_url,
                key,
                max_attempts=max_attempts,
                requests_per_minute=settings.video_api_requests_per_minute,
            )
        )
        yield client


async def run_bot(settings: Settings, args: argparse.Namespace) -> int:
    from bot.adapters.http.links import MediaLinks
    from bot.adapters.http.server import serve_http
    from bot.discord.bot import VideoBot, point_discord_at

    token = settings.require_token()
    catalog = load_catalog(settings.models_file)
    point_discord_at(settings.discord_api_base_url, settings.discord_gateway_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with Store.open(settings.database_path) as store, video_api(settings) as api:
        bot = VideoBot(settings=settings, store=store, api=api, catalog=catalog)
        links = None
        if settings.public_base_url and settings.http_port is not None:
            # Videos too large for Discord even after re-encoding are linked, served by our server.
            links = await MediaLinks.load(store, settings.public_base_url)
            bot.presenter.media_links = links
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stopping.set)
        # The HTTP server (webhooks, /healthz) starts before the gateway and stops before the bot closes.
        async with bot, serve_http(settings, bot, extra_routes=links.routes() if links else ()):
            runner = asyncio.create_task(bot.start(token.get_secret_value()), name="discord")
            stopper = asyncio.create_task(stopping.wait(), name="signal")
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                log.info("shutting down")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SHUTDOWN_GRACE_SECONDS):
                        await bot.close()
            runner.cancel()
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            if runner.done() and not runner.cancelled() and runner.exception() is not None:
                exc = runner.exception()
                if isinstance(exc, discord.LoginFailure):
                    raise ConfigError(
                        "Discord refused DISCORD_TOKEN. Copy the token again from the developer portal."
                    )
                raise exc  # type: ignore[misc]
    return 0


class TerminalPresenter:
    """``videobot generate``'s presenter: a progress line on stderr, the MP4 copied to ``--out``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.failure: str | None = None

    async def job_changed(self, job: Job) -> None:
        print(f"\r{progress_bar(job.progress)}  {job.status.label:<24}", end="", file=sys.stderr, flush=True)

    async def deliver(self, job: Job, media: Path) -> int | None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copyfile, media, self.out)
        print(f"\r{progress_bar(100)}  Done{' ' * 20}", file=sys.stderr)
        return job.id

    async def job_failed(self, job: Job) -> None:
        self.failure = job.error_message or "the video could not be made"
        print(file=sys.stderr)

    async def find_delivery(self, job: Job) -> int | None:
        return job.id if self.out.exists() else None


async def generate(settings: Settings, args: argparse.Namespace) -> int:
    from bot.adapters.media import ImageError, fit_image, sniff_image

    catalog: Catalog = load_catalog(settings.models_file)
    quote = catalog.quote(args.model, args.size, args.seconds)
    prompt = clean_prompt(args.prompt)
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
            except ImageError as exc:
                raise UserError(exc.user_message) from None
            (workdir / "reference.png").write_bytes(fitted)
            reference = str(workdir / "reference.png")
        async with Store.open(workdir / "jobs.db") as store, video_api(settings) as api:
            presenter = TerminalPresenter(args.out)
            tracker = JobTracker(store, api, presenter, workdir, poll_interval=settings.poll_interval_seconds)
            service = JobService(store)
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
            print(
                f"{quote.model} · {quote.size} · {quote.seconds} s · {quote.credits} credits (~${quote.usd:.2f})",
                file=sys.stderr,
            )
            try:
                async with asyncio.timeout(args.timeout):
                    await tracker.run_until_idle()
            except TimeoutError:
                print(f"\nerror: no result after {args.timeout:.0f} s", file=sys.stderr)
                return 1
            finally:
                await tracker.stop()
            final = await store.get_job(job.id)
    if presenter.failure or final is None or final.status.value != "completed":
        print(f"error: {presenter.failure or 'the video could not be made'}", file=sys.stderr)
        return 1
    print(str(args.out))
    return 0


async def serve_local_api(settings: Settings, args: argparse.Namespace) -> int:
    from bot.localapi.renderer import LocalRendererConfig, serve_forever
    from bot.localapi.server import is_loopback, unprotected_host_message

    generation = (
        args.generation_seconds if args.generation_seconds is not None else settings.local_generation_seconds
    )
    key = args.api_key if args.api_key is not None else settings.local_api_key
    api_key = (key.get_secret_value() if isinstance(key, SecretStr) else key) or None
    if api_key is None and not is_loopback(args.host):
        raise ConfigError(unprotected_host_message(args.host))
    config = LocalRendererConfig(
        generation_seconds=generation, data_dir=settings.data_dir / "local-api", api_key=api_key
    )
    with contextlib.suppress(asyncio.CancelledError):
        await serve_forever(config, args.host, args.port)
    return 0


async def check(settings: Settings, args: argparse.Namespace) -> int:
    """Print one line per check; exit 1 if any failed. Secrets are never printed."""
    problems = 0

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        print(f"[{'ok' if ok else 'FAIL'}] {what}: {detail}")

    try:
        token: SecretStr | None = settings.require_token()
        report(True, "DISCORD_TOKEN", "set")
    except ConfigError as exc:
        token = None
        report(False, "DISCORD_TOKEN", str(exc))
    try:
        catalog = load_catalog(settings.models_file)
        names = ", ".join(m.name for m in catalog.models)
        report(True, "model catalog", f"{catalog.source}: {names}")
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
        path = settings.database_path
        async with Store.open(path) as store:
            report(True, "database", f"{path} (schema version {await store.schema_version()})")
    except (ConfigError, OSError, Exception) as exc:
        report(False, "database", f"{type(exc).__name__}: {exc}")

    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        base = settings.discord_api_base_url.rstrip("/")
        headers = {"Authorization": f"Bot {token.get_secret_value()}"} if token else {}
        try:
            async with session.get(f"{base}/users/@me", headers=headers) as resp:
                if resp.status == 200:
                    user = await resp.json()
                    report(True, "Discord", f"{base} accepts the token (bot user {user.get('username')})")
                elif resp.status == 401:
                    report(
                        False, "Discord", f"{base} refused DISCORD_TOKEN (401); copy it again from the portal"
                    )
                else:
                    report(False, "Discord", f"{base} answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            report(False, "Discord", f"cannot reach {base}: {type(exc).__name__}")

    try:
        async with video_api(settings, max_attempts=1) as api:
            try:
                await api.list(limit=1)
                report(True, "Videos API", f"{api.base_url} answers and accepts the key")
            except UnsupportedEndpoint:
                report(
                    True,
                    "Videos API",
                    f"{api.base_url} answers (no list endpoint: single lookups will be used)",
                )
            except AuthenticationError:
                report(False, "Videos API", f"{api.base_url} refused the key; set VIDEO_API_KEY")
            except VideoAPIError as exc:
                report(False, "Videos API", f"{api.base_url}: {exc}")
    except OSError as exc:
        report(False, "Videos API", f"the local renderer failed to start: {exc}")
    print("all checks passed" if problems == 0 else f"{problems} problem(s) found")
    return 0 if problems == 0 else 1


async def invite(settings: Settings, args: argparse.Namespace) -> int:
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
                    if resp.status != 200:
                        raise ConfigError(
                            f"Discord answered HTTP {resp.status} when asked for the application id; pass --client-id"
                        )
                    client_id = int((await resp.json())["id"])
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ConfigError(f"cannot reach Discord ({type(exc).__name__}); pass --client-id") from None
    url = discord.utils.oauth_url(
        client_id, permissions=INVITE_PERMISSIONS, scopes=("bot", "applications.commands")
    )
    print(url)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
