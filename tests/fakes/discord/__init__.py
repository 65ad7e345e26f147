"""An in-process fake of Discord's REST API and gateway, for running *real* discord.py against.

Discord is unreachable from the test environment, so every bot test points discord.py at this
server instead (see :func:`patched_discord`). The fake speaks the same wire format as Discord
(API v10, JSON gateway frames, multipart uploads, Discord's error bodies and rate-limit headers),
keeps a small world model (guilds, channels, roles, members, messages, application commands,
interactions) and records every request so tests can assert on exactly what the bot sent.

Usage::

    async with FakeDiscord() as fake, patched_discord(fake):
        task = asyncio.create_task(client.start(fake.token))
        await fake.wait_connected(timeout=10)
        handle = await fake.invoke_command("ping")
        callback = await handle.wait_response(timeout=5)

Payload shapes follow https://discord.com/developers/docs (interactions/receiving-and-responding,
resources/message, topics/gateway-events, topics/rate-limits, topics/opcodes-and-status-codes).

Modules: ``world`` (the state and waits), ``rest`` (REST routes), ``gateway`` (the websocket),
``driver`` (what tests call to act as members); ``FakeDiscord`` combines them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from tests.fakes.discord.driver import Driver, InteractionHandle
from tests.fakes.discord.gateway import Gateway, _GatewayConnection, _GatewaySession
from tests.fakes.discord.rest import (
    ROUTE_ATTACHMENT,
    ROUTE_CALLBACK,
    ROUTE_CHANNEL_MESSAGE,
    ROUTE_CHANNEL_MESSAGES,
    ROUTE_GLOBAL_COMMANDS,
    ROUTE_GUILD_COMMANDS,
    ROUTE_ORIGINAL,
    ROUTE_WEBHOOK,
    ROUTE_WEBHOOK_MESSAGE,
    Fault,
    FaultInjector,
    RestApi,
    _FixedWindowLimiter,
)
from tests.fakes.discord.world import (
    API_VERSION,
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    Intent,
    MessageEdit,
    MessageFlag,
    Permission,
    RecordedFile,
    RecordedRequest,
    StoredAttachment,
    StoredMessage,
    World,
    _Interaction,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_ATTACHMENT_SIZE_LIMIT",
    "ROUTE_ATTACHMENT",
    "ROUTE_CALLBACK",
    "ROUTE_CHANNEL_MESSAGE",
    "ROUTE_CHANNEL_MESSAGES",
    "ROUTE_GLOBAL_COMMANDS",
    "ROUTE_GUILD_COMMANDS",
    "ROUTE_ORIGINAL",
    "ROUTE_WEBHOOK",
    "ROUTE_WEBHOOK_MESSAGE",
    "FakeDiscord",
    "Fault",
    "FaultInjector",
    "Intent",
    "InteractionHandle",
    "MessageEdit",
    "MessageFlag",
    "Permission",
    "RecordedFile",
    "RecordedRequest",
    "StoredAttachment",
    "StoredMessage",
    "patched_discord",
]


class FakeDiscord(Driver, RestApi, Gateway, World):
    """A fake Discord: aiohttp server on 127.0.0.1 with REST under ``/api/v10`` and a gateway.

    Knobs (all may be changed at any time): ``token``, ``token_ttl_seconds`` (interaction webhook
    tokens, Discord: 15 min), ``callback_deadline_seconds`` (Discord: 3 s to answer an interaction;
    ``None`` disables), ``attachment_size_limit`` (per-file upload limit, also sent in interactions),
    ``channel_message_limit`` / ``webhook_message_limit`` (``(count, seconds)`` buckets for message
    creates+edits per channel / per interaction token), ``global_limit`` (``(count, seconds)`` for
    every bot-token request; interaction-token routes are exempt, as on Discord; 429s are counted in
    ``rate_limited_count`` and by kind in ``rate_limited_by_kind``), ``clock`` (TTLs and rate limits), ``interaction_age_seconds`` (new interactions were created that
    long ago: ids and token lifetimes say so),
    ``privileged_intents`` (which privileged intents the "developer portal" allows),
    ``dispatch_message_events`` (send MESSAGE_CREATE/UPDATE/DELETE when intents allow it),
    ``ack_heartbeats``, ``dm_closed_users``, ``shard_count`` (what ``GET /gateway/bot`` recommends;
    ``add_guild(shard=…)`` places a guild on a shard).
    """

    def __init__(
        self,
        *,
        token: str = "fake-token",
        token_ttl_seconds: float = 900.0,
        callback_deadline_seconds: float | None = 3.0,
        attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
        channel_message_limit: tuple[int, float] | None = None,
        webhook_message_limit: tuple[int, float] | None = None,
        global_limit: tuple[int, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_interval_ms: int = 41250,
        privileged_intents: int = Intent.PRIVILEGED,
        dispatch_message_events: bool = True,
        guild_name: str = "Videobot Test Guild",
        bot_name: str = "videobot",
        shard_count: int = 1,
    ) -> None:
        self.token = token
        # What ``GET /gateway/bot`` recommends; each guild's events go to its shard's sessions.
        self.shard_count = shard_count
        self.token_ttl_seconds = token_ttl_seconds
        self.callback_deadline_seconds = callback_deadline_seconds
        self.attachment_size_limit = attachment_size_limit
        self.clock: Callable[[], float] = clock
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents = privileged_intents
        self.dispatch_message_events = dispatch_message_events
        self.ack_heartbeats = True
        self.dm_closed_users: set[int] = set()
        self.faults = FaultInjector()
        self.rate_limited_count = 0
        self._channel_limiter: _FixedWindowLimiter | None = None
        self._webhook_limiter: _FixedWindowLimiter | None = None
        self.channel_message_limit = channel_message_limit
        self.webhook_message_limit = webhook_message_limit
        # Discord's global limit on bot-token requests (50 per s); 429s by kind: channel, interaction, global.
        self._global_limiter: _FixedWindowLimiter | None = None
        self.global_limit = global_limit
        self.rate_limited_by_kind: Counter[str] = Counter()
        # New interactions were created this long ago (their ids encode it; tokens age from then).
        self.interaction_age_seconds = 0.0
        # False: uploads are recorded with their size only (a benchmark's thousand videos stay off the heap).
        self.keep_file_data = True

        self.requests: list[RecordedRequest] = []
        self.messages: dict[int, StoredMessage] = {}
        self.attachments: dict[int, StoredAttachment] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.guilds: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}  # guild channels and DM channels
        self.gateway_received: list[dict[str, Any]] = []  # every payload clients sent us
        # Every dispatch sent: (the session's (shard_id, shard_count), event name, guild id or None).
        self.dispatched: list[tuple[tuple[int, int], str, int | None]] = []
        self.internal_errors: list[BaseException] = []  # exceptions raised by the fake's own handlers
        self.identify_count = 0
        self.resume_count = 0

        self._ids = itertools.count()
        self._last_ms = 0
        self._increment = 0
        self._request_seq = itertools.count()
        self._conn_ids = itertools.count(1)
        self._cond = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._connections: list[_GatewayConnection] = []
        self._sessions: dict[str, _GatewaySession] = {}
        self._interactions: dict[int, _Interaction] = {}
        self._interactions_by_token: dict[str, _Interaction] = {}
        self._commands: dict[int | None, dict[int, dict[str, Any]]] = {}
        self._member_permissions: dict[tuple[int, int], int] = {}
        self._dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self._routes = self._build_routes()
        # Set by in-process tests (tests/cog): interaction payloads go straight to this callable
        # (discord.py's INTERACTION_CREATE parser) instead of over a gateway connection.
        self.interaction_sink: Callable[[dict[str, Any]], object] | None = None

        self.application_id = self.snowflake()
        # Modern bots share their id with the application.
        self.bot_user: dict[str, Any] = self.add_user(bot_name, user_id=self.application_id, bot=True)
        self.owner_user = self.add_user("owner")
        self.default_user = self.add_user("alice")
        self.guild = self.add_guild(guild_name, owner_id=int(self.owner_user["id"]))
        self.add_member(int(self.default_user["id"]), "alice")

    # ----------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        # client_max_size: aiohttp's 1 MiB default would reject uploads before our own 413 logic.
        app = web.Application(client_max_size=max(64 * 1024 * 1024, self.attachment_size_limit * 12))
        app.router.add_route("GET", "/gateway", self._gateway_handler)
        app.router.add_route("*", "/{tail:.*}", self._http_entry)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        for conn in list(self._connections):
            conn.closed_by_server = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001, message=b"fake shutting down"), 1.0)
        self._connections.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v{API_VERSION}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    @property
    def guild_id(self) -> int:
        return int(self.guild["id"])

    @property
    def channel_id(self) -> int:
        """The default guild's ``#general`` text channel."""
        return int(self.guild["system_channel_id"])

    @property
    def channel_message_limit(self) -> tuple[int, float] | None:
        return (
            None
            if self._channel_limiter is None
            else (self._channel_limiter.limit, self._channel_limiter.per)
        )

    @channel_message_limit.setter
    def channel_message_limit(self, value: tuple[int, float] | None) -> None:
        self._channel_limiter = None if value is None else _FixedWindowLimiter(*value)

    @property
    def webhook_message_limit(self) -> tuple[int, float] | None:
        return (
            None
            if self._webhook_limiter is None
            else (self._webhook_limiter.limit, self._webhook_limiter.per)
        )

    @webhook_message_limit.setter
    def webhook_message_limit(self, value: tuple[int, float] | None) -> None:
        self._webhook_limiter = None if value is None else _FixedWindowLimiter(*value)

    @property
    def global_limit(self) -> tuple[int, float] | None:
        return (
            None if self._global_limiter is None else (self._global_limiter.limit, self._global_limiter.per)
        )

    @global_limit.setter
    def global_limit(self, value: tuple[int, float] | None) -> None:
        self._global_limiter = None if value is None else _FixedWindowLimiter(*value)

    @property
    def unhandled_requests(self) -> list[RecordedRequest]:
        """Requests to routes the fake does not implement (answered 404 ``code: 0``)."""
        return [r for r in self.requests if r.route is None]


@contextlib.contextmanager
def patched_discord(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's REST base, default gateway and CDN base at ``fake``; restore on exit."""
    import discord.asset
    import discord.gateway
    import discord.http
    import yarl

    saved = (
        discord.http.Route.BASE,
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
        discord.asset.Asset.BASE,
    )
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    discord.asset.Asset.BASE = fake.base_url
    try:
        yield
    finally:
        (
            discord.http.Route.BASE,
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
            discord.asset.Asset.BASE,
        ) = saved
