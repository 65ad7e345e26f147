"""The bot's own HTTP server: provider webhooks (``POST /webhooks/videos``) and ``GET /healthz``.

It runs when ``HTTP_PORT`` is set. The webhook route exists only when ``WEBHOOK_SECRET`` is set too:
an unsigned endpoint would let anyone tell the bot that videos are finished, so without a secret the
route is not mounted (404) and the bot says at start-up that webhooks are off.

Webhooks make status push-driven: on ``video.completed`` / ``video.failed`` the tracker acts on that
one video at once instead of waiting for its next sweep (see ``JobTracker.notify_video_event``). Only
verified events reach the tracker, and each ``webhook-id`` at most once within the replay window.

Verification follows Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``;
HMAC-SHA256 over ``"{id}.{timestamp}.{body}"``) with the ``standardwebhooks`` package. Answers:

====================================================  =======================================
missing or malformed ``webhook-*`` headers            400
timestamp more than 5 minutes old or in the future    400 (a resend with the same timestamp won't help)
no valid signature (tampered body, wrong secret)      401
body over ``MAX_WEBHOOK_BODY_BYTES``                  413
body not received within ``BODY_TIMEOUT_SECONDS``     408
signed, but not a JSON event object                   400 (also nested too deep to parse)
a ``webhook-id`` already accepted (a replay/resend)   200 ``{"status": "duplicate"}``, not re-processed
an event type the bot doesn't use                     200 ``{"status": "ignored"}``
``video.completed`` / ``video.failed``                200 ``{"status": "accepted"}``
====================================================  =======================================

Replays get a 2xx rather than a 409 on purpose: Standard Webhooks senders retry every non-2xx answer,
and the usual reason for seeing an id twice is a sender that never got our first answer. A 2xx makes
it stop; a 409 would make it retry until it gives up.

Accepted ids are kept in the database (``webhook_events``) for the replay window, so a replay is
recognised after a restart too.

The server listens on ``HTTP_HOST`` (default 127.0.0.1: put a reverse proxy with TLS in front, or
set ``0.0.0.0`` in a container). A connection must finish each request's headers within
``HEADER_TIMEOUT_SECONDS`` of opening (or of its previous response), and the webhook body must
arrive within ``BODY_TIMEOUT_SECONDS``: slow or stalled clients can't hold connections open. A
client that disconnects mid-request, or sends a malformed one, costs one INFO line, not a traceback.

Adding a route (e.g. signed download links for oversize videos): pass ``extra_routes`` to
:func:`serve_http`, or call :meth:`BotHTTPServer.add_routes` before :meth:`BotHTTPServer.start`
(aiohttp freezes the router when the server starts).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import SecretStr
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bot.adapters.sql.webhook_events import WebhookEventLog
from bot.domain.errors import ConfigError

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)

WEBHOOK_PATH: Final = "/webhooks/videos"
HEALTH_PATH: Final = "/healthz"
# A video event is ~200 bytes; 64 KiB leaves room for providers that add fields, and keeps a
# flood of junk from costing more than a read of that size per request.
MAX_WEBHOOK_BODY_BYTES: Final = 64 * 1024
# Standard Webhooks' (and the standardwebhooks package's) tolerance for the signed timestamp.
TIMESTAMP_TOLERANCE_SECONDS: Final = 5 * 60
# Ids are remembered for longer than the tolerance: an older resend is refused by its timestamp.
REPLAY_WINDOW_SECONDS: Final = TIMESTAMP_TOLERANCE_SECONDS + 60
# How long a connection may take to deliver a request's headers, counted from when it opens or from
# its previous response. Senders and probes send a request at once, so a few seconds is plenty.
HEADER_TIMEOUT_SECONDS: Final = 10.0
BODY_TIMEOUT_SECONDS: Final = 10.0
# After answering a request whose body wasn't read (a refusal, a timeout), aiohttp keeps reading and
# discarding it for this long so a sender still uploading sees the answer rather than a reset. Its
# default, 10 s, would let a stalled sender keep the connection that much longer.
LINGER_SECONDS: Final = 2.0
DEFAULT_HOST: Final = "127.0.0.1"
HEALTH_CHECK_TIMEOUT_SECONDS: Final = 2.0
VIDEO_EVENT_TYPES: Final = frozenset({"video.completed", "video.failed"})

_REQUIRED_HEADERS: Final = ("webhook-id", "webhook-timestamp", "webhook-signature")


class EventIdLog(Protocol):
    """Remembers accepted ``webhook-id``s: ``claim`` is True only the first time within the window
    (atomically, so two deliveries of one id racing each other are processed once)."""

    async def claim(self, event_id: str) -> bool: ...


class VideoWebhookReceiver:
    """Verifies provider webhooks and hands video events to ``on_video_event(video_id, event_type)``."""

    def __init__(
        self,
        secret: SecretStr,
        on_video_event: Callable[[str, str], None],
        *,
        event_ids: EventIdLog,
        max_body_bytes: int = MAX_WEBHOOK_BODY_BYTES,
        body_timeout_seconds: float = BODY_TIMEOUT_SECONDS,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier_for(secret)
        self._on_video_event = on_video_event
        self.event_ids = event_ids
        self.max_body_bytes = max_body_bytes
        self.body_timeout_seconds = body_timeout_seconds
        self._now = now  # wall clock: the signed timestamp is compared with it
        self.accepted = 0
        self.rejected = 0

    def __repr__(self) -> str:  # the verifier holds the secret's key bytes; never show them
        return f"VideoWebhookReceiver(accepted={self.accepted}, rejected={self.rejected})"

    async def handle(self, request: web.Request) -> web.Response:
        headers = {name: request.headers.get(name, "") for name in _REQUIRED_HEADERS}
        missing = [name for name, value in headers.items() if not value]
        if missing:
            return self._reject(request, 400, f"missing {', '.join(missing)} header(s)")
        event_id = headers["webhook-id"]
        try:
            sent_at = float(headers["webhook-timestamp"])
        except ValueError:
            sent_at = math.nan
        if not math.isfinite(sent_at):
            return self._reject(request, 400, "webhook-timestamp is not a number of seconds")
        if abs(self._now() - sent_at) > TIMESTAMP_TOLERANCE_SECONDS:
            return self._reject(request, 400, "webhook-timestamp is outside the 5-minute tolerance")

        try:
            async with asyncio.timeout(self.body_timeout_seconds):
                body = await _read_capped(request, self.max_body_bytes)
        except TimeoutError:
            return self._reject(
                request, 408, f"the body did not arrive within {self.body_timeout_seconds:g} s"
            )
        except ConnectionError:
            # Nobody is left to answer; a traceback would only alarm whoever reads the log.
            log.info("webhook from %s: the sender disconnected before its body arrived", request.remote)
            return web.Response(status=400)
        if body is None:
            return self._reject(request, 413, f"body over {self.max_body_bytes} bytes")
        try:
            # Verifies the signature only: the package checks the timestamp against its own clock
            # too, which agrees with the check above.
            self._verifier.verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError):
            # ValueError: a malformed signature list or a body that isn't UTF-8 — unsigned either way.
            return self._reject(request, 401, "no valid signature")

        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            # RecursionError: arrays nested thousands deep fit in the size cap and exhaust the parser.
            return self._reject(request, 400, "the body is not JSON")
        if not isinstance(event, dict):
            return self._reject(request, 400, "the body is not a JSON object")
        event_type = event.get("type")
        video_id = None
        if event_type in VIDEO_EVENT_TYPES:
            data = event.get("data")
            video_id = data.get("id") if isinstance(data, dict) else None
            if not isinstance(video_id, str) or not video_id:
                return self._reject(request, 400, f"{event_type} event without data.id")
        # Claimed only once the event is known to be well-formed: a refused event doesn't use up its id.
        if not await self.event_ids.claim(event_id):
            log.debug("webhook %s already processed; answering 200 without doing it again", event_id)
            return web.json_response({"status": "duplicate"})
        if video_id is None:
            log.debug("webhook %s: ignoring event type %r", event_id, event_type)
            return web.json_response({"status": "ignored"})
        self.accepted += 1
        log.info("webhook %s: %s for video %s", event_id, event_type, _short(video_id))
        # The type matters: the tracker downloads on "completed" and asks the provider why on "failed".
        self._on_video_event(video_id, str(event_type))
        return web.json_response({"status": "accepted"})

    def _reject(self, request: web.Request, status: int, reason: str) -> web.Response:
        self.rejected += 1
        log.warning("webhook from %s refused (HTTP %d): %s", request.remote, status, reason)
        return web.json_response({"error": reason}, status=status)


def verifier_for(secret: SecretStr) -> Webhook:
    value = secret.get_secret_value().strip()
    try:
        # standardwebhooks decodes leniently (it skips characters that aren't base64); a typo in
        # the secret would then only show as every delivery failing, so check it strictly here.
        base64.b64decode(value.removeprefix("whsec_"), validate=True)
        return Webhook(value)
    except Exception:
        # Never chain or echo the error: it may quote the secret.
        raise ConfigError(
            "WEBHOOK_SECRET is not a Standard Webhooks secret: it must be 'whsec_' followed by base64, "
            "exactly as the provider shows it."
        ) from None


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit`` (without reading the rest)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _short(video_id: str) -> str:
    # Some gateways use opaque ids of hundreds of characters; the log needs only enough to grep.
    return video_id if len(video_id) <= 64 else f"{video_id[:61]}..."


# --------------------------------------------------------------------------- health


@dataclass(frozen=True)
class HealthChecks:
    """What ``/healthz`` asks. Each check answers quickly; a check that raises counts as failing."""

    database: Callable[[], Awaitable[bool]]
    gateway: Callable[[], bool]
    tracker: Callable[[], bool]
    # Each gateway shard of this process (id, connected, latency_ms), reported as they are.
    shards: Callable[[], list[dict[str, Any]]] | None = None


async def check_health(checks: HealthChecks) -> dict[str, Any]:
    try:
        async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_SECONDS):
            database = bool(await checks.database())
    except Exception as exc:
        log.warning("health check: the database did not answer (%s)", type(exc).__name__)
        database = False
    gateway = _safely(checks.gateway)
    tracker = _safely(checks.tracker)
    healthy = database and gateway and tracker
    report: dict[str, Any] = {
        "status": "ok" if healthy else "degraded",
        "database": database,
        "gateway": gateway,
        "tracker": tracker,
    }
    if checks.shards is not None:
        try:
            report["shards"] = checks.shards()
        except Exception:
            log.exception("health check of the shards failed")
            report["shards"] = []
    return report


def _safely(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        log.exception("health check failed")
        return False


# --------------------------------------------------------------------------- server


class _ClientFaultsQuietly(logging.LoggerAdapter):
    """aiohttp's connection-handler logger, minus tracebacks for what clients get wrong.

    aiohttp answers a malformed request (a bad header line, a broken chunked body) with a 400 and
    logs it as an error with a traceback; anyone can send one, so that is one INFO line here.
    Errors in the bot's own handlers still get their traceback."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            reason = (exc_info.message or type(exc_info).__name__).strip().splitlines()[0].rstrip(":")
            self.info(
                "%s: refused with HTTP %s (%s)", str(msg) % args if args else msg, exc_info.code, reason
            )
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


class BotHTTPServer:
    """An aiohttp server with ``/healthz`` and, given a receiver, ``POST /webhooks/videos``.

    ``port=0`` picks a free port (tests); :attr:`port` then reports the real one."""

    def __init__(
        self,
        health: HealthChecks,
        webhooks: VideoWebhookReceiver | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS,
    ) -> None:
        self.health = health
        self.webhooks = webhooks
        self.host = host
        self.header_timeout_seconds = header_timeout_seconds
        self._requested_port = port
        self._port: int | None = None
        # client_max_size bounds every route's body; the webhook route has its own, smaller cap.
        self.app = web.Application(client_max_size=1024 * 1024, middlewares=[self._note_request])
        self.app.router.add_get(HEALTH_PATH, self._healthz)
        if webhooks is not None:
            self.app.router.add_post(WEBHOOK_PATH, webhooks.handle)
        self._runner: web.AppRunner | None = None
        self._deadline_task: asyncio.Task[None] | None = None
        # Connections (aiohttp's per-connection handlers) that delivered a request, and since when
        # the sweep has seen the others: see _close_connections_without_a_request.
        self._served: set[object] = set()
        self._waiting_since: dict[object, float] = {}

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Mount more routes; only before :meth:`start`."""
        if self._runner is not None:
            raise RuntimeError("add routes before the HTTP server starts")
        self.app.add_routes(list(routes))

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the HTTP server is not running")
        return self._port

    async def start(self) -> None:
        # access_log=None: /healthz probes and webhooks would drown the bot's own log; the webhook
        # handler logs what matters (accepted events at INFO, refusals at WARNING).
        # keepalive_timeout: after a response, aiohttp closes a connection whose next request's
        # headers haven't arrived in this long (idle or trickling); the first request's headers
        # are the sweep's job below (older aiohttp, 3.14.3 for one, doesn't time them at all).
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=self.header_timeout_seconds,
            lingering_time=LINGER_SECONDS,
            logger=_ClientFaultsQuietly(logging.getLogger("aiohttp.server"), {}),
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._requested_port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"HTTP_PORT {self._requested_port}: cannot listen on {self.host} ({exc.strerror or exc}); "
                "pick a free port or unset HTTP_PORT."
            ) from None
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        assert runner.server is not None  # set by setup()
        self._deadline_task = asyncio.create_task(
            self._close_connections_without_a_request(runner.server), name="http-header-deadline"
        )

    async def stop(self) -> None:
        if self._deadline_task is not None:
            self._deadline_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deadline_task
            self._deadline_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._port = None

    async def __aenter__(self) -> BotHTTPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @web.middleware
    async def _note_request(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self._served.add(request.protocol)
        return await handler(request)

    async def _close_connections_without_a_request(self, server: web.Server) -> None:
        """Closes connections that have been open ``header_timeout_seconds`` without completing a
        first request (a slowloris sends headers a byte at a time, forever).

        A sweep, a quarter of the timeout apart, so a connection gets between 1 and 1.25 times the
        timeout; it uses only aiohttp's public view of its connections."""
        loop = asyncio.get_running_loop()
        interval = self.header_timeout_seconds / 4
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            live = set(server.connections)
            self._served &= live
            self._waiting_since = {c: t for c, t in self._waiting_since.items() if c in live}
            for connection in live - self._served:
                if now - self._waiting_since.setdefault(connection, now) >= self.header_timeout_seconds:
                    connection.force_close()

    async def _healthz(self, request: web.Request) -> web.Response:
        report = await check_health(self.health)
        return web.json_response(report, status=200 if report["status"] == "ok" else 503)


@contextlib.asynccontextmanager
async def serve_http(
    settings: Settings,
    *,
    health: HealthChecks,
    on_video_event: Callable[[str, str], None],
    event_log: WebhookEventLog,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
) -> AsyncIterator[BotHTTPServer | None]:
    """Run the bot's HTTP server for the duration of the block when ``HTTP_PORT`` is set (else
    yield None). Webhooks are on only with ``WEBHOOK_SECRET``: a verified event is handed to
    ``on_video_event(video_id, event_type)``, once per event id (``event_log``)."""
    if settings.http_port is None:
        if settings.webhook_secret is not None:
            log.warning(
                "WEBHOOK_SECRET is set but HTTP_PORT is not: no server to receive webhooks (polling only)"
            )
        else:
            log.info("HTTP_PORT is not set: no HTTP server; webhooks and /healthz are off (polling only)")
        yield None
        return
    receiver = None
    if settings.webhook_secret is not None:
        receiver = VideoWebhookReceiver(
            settings.webhook_secret,
            on_video_event,
            event_ids=event_log,
        )
    server = BotHTTPServer(health, receiver, host=settings.http_host, port=settings.http_port)
    server.add_routes(extra_routes)
    async with server:
        if receiver is None:
            log.info(
                "HTTP server on port %d at %s (%s); webhooks are off: set WEBHOOK_SECRET to receive them",
                server.port,
                settings.http_host,
                HEALTH_PATH,
            )
        else:
            log.info(
                "HTTP server on port %d at %s (%s, POST %s)",
                server.port,
                settings.http_host,
                HEALTH_PATH,
                WEBHOOK_PATH,
            )
        yield server
