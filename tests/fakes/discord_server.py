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
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import mimetypes
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import quote

from aiohttp import WSMsgType, web

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

T = TypeVar("T")

API_VERSION: Final = 10
DISCORD_EPOCH_MS: Final = 1_420_070_400_000
DEFAULT_ATTACHMENT_SIZE_LIMIT: Final = 10 * 1024 * 1024  # what Discord sends for non-boosted guilds


class Permission:
    """Permission bits (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE: Final = 1 << 0
    KICK_MEMBERS: Final = 1 << 1
    BAN_MEMBERS: Final = 1 << 2
    ADMINISTRATOR: Final = 1 << 3
    MANAGE_CHANNELS: Final = 1 << 4
    MANAGE_GUILD: Final = 1 << 5
    ADD_REACTIONS: Final = 1 << 6
    VIEW_AUDIT_LOG: Final = 1 << 7
    VIEW_CHANNEL: Final = 1 << 10
    SEND_MESSAGES: Final = 1 << 11
    MANAGE_MESSAGES: Final = 1 << 13
    EMBED_LINKS: Final = 1 << 14
    ATTACH_FILES: Final = 1 << 15
    READ_MESSAGE_HISTORY: Final = 1 << 16
    MENTION_EVERYONE: Final = 1 << 17
    USE_EXTERNAL_EMOJIS: Final = 1 << 18
    CHANGE_NICKNAME: Final = 1 << 26
    MANAGE_ROLES: Final = 1 << 28
    USE_APPLICATION_COMMANDS: Final = 1 << 31
    SEND_MESSAGES_IN_THREADS: Final = 1 << 38
    # Every bit Discord defines in API v10 (equals discord.Permissions.all().value in discord.py 2.7).
    ALL: Final = 8866461766385663

    # What a freshly created guild gives @everyone, minus voice bits we never need.
    DEFAULT_EVERYONE: Final = (
        CREATE_INSTANT_INVITE
        | ADD_REACTIONS
        | VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | MENTION_EVERYONE
        | USE_EXTERNAL_EMOJIS
        | CHANGE_NICKNAME
        | USE_APPLICATION_COMMANDS
        | SEND_MESSAGES_IN_THREADS
    )
    # What the bot's managed role gets when invited with the scopes a video bot asks for.
    DEFAULT_BOT: Final = (
        VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | ADD_REACTIONS
        | USE_EXTERNAL_EMOJIS
        | SEND_MESSAGES_IN_THREADS
        | USE_APPLICATION_COMMANDS
    )


class Intent:
    """Gateway intent bits (https://discord.com/developers/docs/topics/gateway#gateway-intents)."""

    GUILDS: Final = 1 << 0
    GUILD_MEMBERS: Final = 1 << 1
    GUILD_PRESENCES: Final = 1 << 8
    GUILD_MESSAGES: Final = 1 << 9
    DIRECT_MESSAGES: Final = 1 << 12
    MESSAGE_CONTENT: Final = 1 << 15
    PRIVILEGED: Final = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class MessageFlag:
    SUPPRESS_EMBEDS: Final = 1 << 2
    EPHEMERAL: Final = 1 << 6
    LOADING: Final = 1 << 7
    SUPPRESS_NOTIFICATIONS: Final = 1 << 12
    IS_VOICE_MESSAGE: Final = 1 << 13
    IS_COMPONENTS_V2: Final = 1 << 15


class _Op:
    DISPATCH: Final = 0
    HEARTBEAT: Final = 1
    IDENTIFY: Final = 2
    PRESENCE_UPDATE: Final = 3
    VOICE_STATE_UPDATE: Final = 4
    RESUME: Final = 6
    RECONNECT: Final = 7
    REQUEST_GUILD_MEMBERS: Final = 8
    INVALID_SESSION: Final = 9
    HELLO: Final = 10
    HEARTBEAT_ACK: Final = 11


# Interaction types / callback types (receiving-and-responding#interaction-object-interaction-type).
_ITYPE_APPLICATION_COMMAND: Final = 2
_ITYPE_COMPONENT: Final = 3
_ITYPE_AUTOCOMPLETE: Final = 4
_ITYPE_MODAL_SUBMIT: Final = 5
_CB_PONG: Final = 1
_CB_CHANNEL_MESSAGE: Final = 4
_CB_DEFERRED_CHANNEL_MESSAGE: Final = 5
_CB_DEFERRED_UPDATE_MESSAGE: Final = 6
_CB_UPDATE_MESSAGE: Final = 7
_CB_AUTOCOMPLETE_RESULT: Final = 8
_CB_MODAL: Final = 9

# Routes. Templates are spelled exactly like discord.py's ``Route`` paths so fault rules and
# assertions can be copied from discord.py's http.py / webhook/async_.py.
ROUTE_CALLBACK: Final = "/interactions/{webhook_id}/{webhook_token}/callback"
ROUTE_ORIGINAL: Final = "/webhooks/{webhook_id}/{webhook_token}/messages/@original"
ROUTE_WEBHOOK: Final = "/webhooks/{webhook_id}/{webhook_token}"
ROUTE_WEBHOOK_MESSAGE: Final = "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"
ROUTE_CHANNEL_MESSAGES: Final = "/channels/{channel_id}/messages"
ROUTE_CHANNEL_MESSAGE: Final = "/channels/{channel_id}/messages/{message_id}"
ROUTE_GLOBAL_COMMANDS: Final = "/applications/{application_id}/commands"
ROUTE_GUILD_COMMANDS: Final = "/applications/{application_id}/guilds/{guild_id}/commands"
ROUTE_ATTACHMENT: Final = "/attachments/{attachment_id}/{filename}"

_MAX_CONTENT: Final = 2000
_MAX_EMBEDS: Final = 10
_MAX_EMBED_CHARS: Final = 6000
_MAX_FILES: Final = 10

# A 1x1 transparent PNG, served for default avatars so ``Asset.read()`` works offline.
_PNG_1X1: Final = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4cf0000000049454e44ae426082"
)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _sf(value: int | str | None) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------------------------------
# Records exposed to tests
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedFile:
    """One ``files[n]`` part of a multipart request, exactly as uploaded."""

    field_name: str
    index: int
    filename: str
    content_type: str | None  # discord.py always sends application/octet-stream
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    """An HTTP request the fake received, with what it answered."""

    seq: int
    method: str
    route: str | None  # templated, e.g. "/channels/{channel_id}/messages"; None if unknown
    path: str  # concrete path relative to the API base, e.g. "/channels/1/messages"
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    json: Any  # parsed JSON body, or the parsed ``payload_json`` part of a multipart body
    files: list[RecordedFile]
    at: float  # fake.clock() when received
    status: int = 0
    response_json: Any = None
    fault: Fault | None = None

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")

    @property
    def is_multipart(self) -> bool:
        return bool(self.files) or self.headers.get("Content-Type", "").startswith("multipart/")


@dataclass
class StoredAttachment:
    id: int
    filename: str
    content_type: str | None
    data: bytes
    url: str
    proxy_url: str
    description: str | None = None
    width: int | None = None
    height: int | None = None
    ephemeral: bool = False
    title: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.proxy_url,
            "content_type": self.content_type,
            "width": self.width,
            "height": self.height,
            "ephemeral": self.ephemeral,
        }
        if self.description is not None:
            payload["description"] = self.description
        if self.title is not None:
            payload["title"] = self.title
        if payload["content_type"] is None:
            del payload["content_type"]
        return payload


@dataclass
class MessageEdit:
    at: float  # fake.clock()
    route: str
    changes: dict[str, Any]  # the body as sent
    files: list[RecordedFile]
    before: dict[str, Any]  # message payload snapshot before the edit


@dataclass
class StoredMessage:
    id: int
    channel_id: int
    guild_id: int | None
    author: dict[str, Any]
    type: int = 0
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[StoredAttachment] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    tts: bool = False
    nonce: str | int | None = None
    message_reference: dict[str, Any] | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    interaction_token: str | None = None
    interaction_metadata: dict[str, Any] | None = None
    interaction_name: str = ""  # for the deprecated ``interaction`` block
    timestamp: str = field(default_factory=_now_iso)
    edited_timestamp: str | None = None
    edits: list[MessageEdit] = field(default_factory=list)
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # sticker_ids, poll, ... as sent

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & MessageFlag.LOADING)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "type": self.type,
            "author": dict(self.author),
            "content": self.content,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": self.tts,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.to_payload() for a in self.attachments],
            "embeds": [dict(e) for e in self.embeds],
            "components": json.loads(json.dumps(self.components)),
            "pinned": False,
            "flags": self.flags,
        }
        if self.nonce is not None:
            payload["nonce"] = self.nonce
        if self.message_reference is not None:
            payload["message_reference"] = dict(self.message_reference)
        if self.webhook_id is not None:
            payload["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            payload["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            meta = self.interaction_metadata
            payload["interaction_metadata"] = dict(meta)
            # The deprecated ``interaction`` field is still sent by Discord and read by discord.py.
            payload["interaction"] = {
                "id": meta["id"],
                "type": meta["type"],
                "name": self.interaction_name,
                "user": meta["user"],
            }
        return payload


# --------------------------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------------------------

_DEFAULT_ERROR_BODIES: Final[dict[int, tuple[int, str]]] = {
    400: (50035, "Invalid Form Body"),
    401: (0, "401: Unauthorized"),
    403: (50013, "Missing Permissions"),
    404: (0, "404: Not Found"),
    405: (0, "405: Method Not Allowed"),
    413: (40005, "Request entity too large"),
    429: (0, "You are being rate limited."),
    500: (0, "500: Internal Server Error"),
    502: (0, "502: Bad Gateway"),
    503: (0, "503: Service Unavailable"),
    504: (0, "504: Gateway Timeout"),
}


@dataclass
class Fault:
    """A rule that makes matching requests fail (or slow down) instead of being handled."""

    method: str | None
    route: str | None
    status: int | None  # None = only apply ``delay``, then handle normally
    count: int | None  # how many more times to fire; None = forever
    json: Any = None
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    is_global: bool = False
    predicate: Callable[[RecordedRequest], bool] | None = None
    hits: int = 0

    def matches(self, request: RecordedRequest) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.method is not None and self.method.upper() != request.method:
            return False
        if self.route is not None and self.route != request.route:
            return False
        return self.predicate is None or self.predicate(request)


class FaultInjector:
    """``fake.faults``: rules are checked in insertion order; the first live match fires."""

    def __init__(self) -> None:
        self.rules: list[Fault] = []

    def add(
        self,
        method: str | None = None,
        route: str | None = None,
        status: int | None = 500,
        count: int | None = 1,
        json: Any = None,
        retry_after: float | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        is_global: bool = False,
        predicate: Callable[[RecordedRequest], bool] | None = None,
    ) -> Fault:
        """Fail the next ``count`` requests matching ``method`` and templated ``route``.

        ``status=429`` answers like Discord's rate limiter (body ``retry_after``/``global`` plus
        ``Retry-After``, ``X-RateLimit-*`` and ``Via`` headers; retry_after defaults to 0.1 s).
        ``json`` replaces the default error body. ``delay`` sleeps before answering (latency).
        Beware: discord.py sleeps ``1 + 2 * attempt`` seconds before retrying a 500/502/504.
        """
        fault = Fault(
            method=method,
            route=route,
            status=status,
            count=count,
            json=json,
            retry_after=retry_after,
            headers=dict(headers or {}),
            delay=delay,
            is_global=is_global,
            predicate=predicate,
        )
        self.rules.append(fault)
        return fault

    def clear(self) -> None:
        self.rules.clear()

    def match(self, request: RecordedRequest) -> Fault | None:
        for fault in self.rules:
            if fault.matches(request):
                if fault.count is not None:
                    fault.count -= 1
                fault.hits += 1
                return fault
        return None


class _FixedWindowLimiter:
    """Discord-style bucket: ``limit`` requests per ``per`` seconds, window starts at first use."""

    def __init__(self, limit: int, per: float) -> None:
        self.limit = limit
        self.per = per
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, now: float) -> tuple[bool, int, float]:
        """Returns (allowed, remaining, reset_after)."""
        reset_at, used = self._windows.get(key, (now + self.per, 0))
        if now >= reset_at:
            reset_at, used = now + self.per, 0
        if used >= self.limit:
            self._windows[key] = (reset_at, used)
            return False, 0, reset_at - now
        used += 1
        self._windows[key] = (reset_at, used)
        return True, self.limit - used, reset_at - now


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        self.headers: dict[str, str] = {}
        if errors is not None:
            self.body["errors"] = errors


def _form_error(field_path: str, code: str, message: str) -> _ApiError:
    """Discord's nested 50035 error body, e.g. ``{"errors": {"content": {"_errors": [...]}}}``."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field_path.split(".")):
        errors = {part: errors}
    return _ApiError(400, 50035, "Invalid Form Body", errors)


def _unknown(what: str, code: int) -> _ApiError:
    return _ApiError(404, code, f"Unknown {what}")


# --------------------------------------------------------------------------------------------
# Interactions
# --------------------------------------------------------------------------------------------


@dataclass
class _Interaction:
    id: int
    token: str
    type: int
    payload: dict[str, Any]
    created_at: float
    guild_id: int | None
    channel_id: int
    user: dict[str, Any]
    name: str = ""
    source_message_id: int | None = None  # the message a component / modal lives on
    callback_type: int | None = None
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    choices: list[dict[str, Any]] | None = None
    expired: bool = False


@dataclass
class InteractionHandle:
    """What ``invoke_command`` & co. return: the interaction as dispatched, plus waiters."""

    fake: FakeDiscord
    id: int
    token: str
    type: int
    payload: dict[str, Any]

    @property
    def _state(self) -> _Interaction:
        return self.fake._interactions[self.id]

    @property
    def callback_type(self) -> int | None:
        return self._state.callback_type

    @property
    def followups(self) -> list[StoredMessage]:
        """Followup messages created so far (not counting one that completed a deferred @original)."""
        return [self.fake.messages[mid] for mid in self._state.followup_ids]

    def requests(self) -> list[RecordedRequest]:
        """Every callback / webhook request made for this interaction so far."""
        return [
            r
            for r in self.fake.requests
            if r.params.get("webhook_token") == self.token
            or (r.route == ROUTE_CALLBACK and r.params.get("webhook_id") == str(self.id))
        ]

    async def wait_response(self, timeout: float = 10.0) -> RecordedRequest:  # noqa: ASYNC109
        """The first ``POST /interactions/{id}/{token}/callback`` (whatever it answered)."""
        return await self.fake.wait_for_request(
            lambda r: r.route == ROUTE_CALLBACK and r.params.get("webhook_id") == str(self.id),
            timeout=timeout,
        )

    async def original_message(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109
        predicate: Callable[[StoredMessage], bool] | None = None,
    ) -> StoredMessage:
        """The @original message (created by a type 4/5 callback, or the component's message
        for 6/7), optionally waiting until ``predicate`` holds for it (e.g. after an edit)."""

        def find() -> StoredMessage | None:
            mid = self._state.original_message_id
            msg = self.fake.messages.get(mid) if mid is not None else None
            if msg is None or (predicate is not None and not predicate(msg)):
                return None
            return msg

        return await self.fake._wait(find, timeout, f"@original of interaction {self.id}")

    async def wait_followup(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109
        predicate: Callable[[StoredMessage], bool] | None = None,
    ) -> StoredMessage:
        """The first followup message (``POST /webhooks/{app}/{token}``) matching ``predicate``."""

        def find() -> StoredMessage | None:
            for mid in self._state.followup_ids:
                msg = self.fake.messages[mid]
                if predicate is None or predicate(msg):
                    return msg
            return None

        return await self.fake._wait(find, timeout, f"a followup of interaction {self.id}")

    async def choices(self, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """The autocomplete choices the bot answered with (callback type 8)."""
        return await self.fake._wait(
            lambda: self._state.choices, timeout, f"autocomplete result of {self.id}"
        )

    async def modal(self, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The modal the bot opened (callback type 9 ``data``: custom_id, title, components)."""
        return await self.fake._wait(lambda: self._state.modal, timeout, f"modal of {self.id}")


# --------------------------------------------------------------------------------------------
# Gateway
# --------------------------------------------------------------------------------------------


@dataclass
class _GatewaySession:
    id: str
    intents: int
    shard: tuple[int, int]
    seq: int = 0
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    conn: _GatewayConnection | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _GatewayConnection:
    id: int
    ws: web.WebSocketResponse
    query: dict[str, str]
    session: _GatewaySession | None = None
    ready: bool = False  # READY or RESUMED sent
    closed_by_server: bool = False
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, payload: dict[str, Any]) -> None:
        # Plain TEXT frames: discord.py only runs its zlib/zstd decompressor on BINARY frames.
        async with self.send_lock:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(payload))


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

_Handler = Callable[["_Call"], Awaitable[web.StreamResponse]]


@dataclass
class _Call:
    request: web.Request
    record: RecordedRequest

    @property
    def params(self) -> dict[str, str]:
        return self.record.params

    @property
    def body(self) -> dict[str, Any]:
        return self.record.json if isinstance(self.record.json, dict) else {}


@dataclass
class _RouteSpec:
    method: str
    template: str
    handler: _Handler
    bot_auth: bool
    regex: re.Pattern[str]


class FakeDiscord:
    """A fake Discord: aiohttp server on 127.0.0.1 with REST under ``/api/v10`` and a gateway.

    Knobs (all may be changed at any time): ``token``, ``token_ttl_seconds`` (interaction webhook
    tokens, Discord: 15 min), ``callback_deadline_seconds`` (Discord: 3 s to answer an interaction;
    ``None`` disables), ``attachment_size_limit`` (per-file upload limit, also sent in interactions),
    ``channel_message_limit`` / ``webhook_message_limit`` (``(count, seconds)`` buckets for message
    creates+edits per channel / per interaction token), ``clock`` (TTLs and rate limits),
    ``privileged_intents`` (which privileged intents the "developer portal" allows),
    ``dispatch_message_events`` (send MESSAGE_CREATE/UPDATE/DELETE when intents allow it),
    ``ack_heartbeats``, ``dm_closed_users``.
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
        clock: Callable[[], float] = time.monotonic,
        heartbeat_interval_ms: int = 41250,
        privileged_intents: int = Intent.PRIVILEGED,
        dispatch_message_events: bool = True,
        guild_name: str = "Videobot Test Guild",
        bot_name: str = "videobot",
    ) -> None:
        self.token = token
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

        self.requests: list[RecordedRequest] = []
        self.messages: dict[int, StoredMessage] = {}
        self.attachments: dict[int, StoredAttachment] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.guilds: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}  # guild channels and DM channels
        self.gateway_received: list[dict[str, Any]] = []  # every payload clients sent us
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
    def unhandled_requests(self) -> list[RecordedRequest]:
        """Requests to routes the fake does not implement (answered 404 ``code: 0``)."""
        return [r for r in self.requests if r.route is None]

    # ----------------------------------------------------------------------------- ids & waits

    def snowflake(self) -> int:
        """A realistic 64-bit snowflake: wall-clock ms since the Discord epoch + an increment."""
        now = int(time.time() * 1000)
        if now > self._last_ms:
            self._last_ms, self._increment = now, 0
        else:
            self._increment += 1
            if self._increment >= 4096:
                self._last_ms, self._increment = self._last_ms + 1, 0
        return ((self._last_ms - DISCORD_EPOCH_MS) << 22) | self._increment

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def _wait(self, find: Callable[[], T | None], timeout: float, what: str) -> T:  # noqa: ASYNC109
        def boxed() -> tuple[T] | None:
            # Condition.wait_for wants truthiness; box results so [] / 0 count as found.
            found = find()
            return None if found is None else (found,)

        async with self._cond:
            try:
                result = await asyncio.wait_for(self._cond.wait_for(boxed), timeout)
            except TimeoutError:
                recent = ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-8:])
                raise TimeoutError(
                    f"FakeDiscord: timed out after {timeout}s waiting for {what}; last requests: [{recent}]"
                ) from None
        return result[0]

    def mark(self) -> int:
        """Number of requests recorded so far; pass as ``since=`` to only look at newer ones."""
        return len(self.requests)

    async def wait_for_request(
        self,
        predicate: Callable[[RecordedRequest], bool],
        timeout: float = 10.0,  # noqa: ASYNC109
        *,
        since: int = 0,
    ) -> RecordedRequest:
        """The first recorded request (from index ``since``) matching ``predicate``; already
        recorded ones are checked first. Requests are recorded once they have been answered."""

        def find() -> RecordedRequest | None:
            return next((r for r in self.requests[since:] if predicate(r)), None)

        return await self._wait(find, timeout, "a matching request")

    async def wait_for_message(
        self,
        predicate: Callable[[StoredMessage], bool],
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        """The first stored message matching ``predicate``; re-checked after every create/edit."""

        def find() -> StoredMessage | None:
            return next((m for m in self.messages.values() if predicate(m)), None)

        return await self._wait(find, timeout, "a matching message")

    # ----------------------------------------------------------------------------- world model

    def add_user(self, name: str, *, user_id: int | None = None, bot: bool = False) -> dict[str, Any]:
        uid = user_id if user_id is not None else self.snowflake()
        user = {
            "id": str(uid),
            "username": name,
            "discriminator": "0",
            "global_name": None if bot else name.title(),
            "avatar": None,
            "banner": None,
            "accent_color": None,
            "bot": bot,
            "system": False,
            "public_flags": 0,
            "avatar_decoration_data": None,
        }
        self.users[uid] = user
        return user

    def add_guild(self, name: str, *, owner_id: int | None = None) -> dict[str, Any]:
        """A guild with @everyone, the bot's managed role + member, a category and ``#general``.
        Call before the client connects (or send GUILD_CREATE yourself via ``announce_guild``)."""
        gid = self.snowflake()
        owner = owner_id if owner_id is not None else int(self.owner_user["id"])
        guild: dict[str, Any] = {
            "id": str(gid),
            "name": name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(owner),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "application_id": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": [self._role_payload(gid, "@everyone", Permission.DEFAULT_EVERYONE, position=0)],
            "channels": [],
            "members": [],
            "joined_at": _now_iso(),
        }
        self.guilds[gid] = guild
        bot_role = self.add_role("videobot", Permission.DEFAULT_BOT, guild_id=gid)
        bot_role["managed"] = True
        bot_role["tags"] = {"bot_id": self.bot_user["id"]}
        if owner in self.users:
            self.add_member(owner, self.users[owner]["username"], guild_id=gid)
        self.add_member(
            self.application_id, self.bot_user["username"], roles=[int(bot_role["id"])], guild_id=gid
        )
        category = self.add_channel("Text Channels", type=4, guild_id=gid)
        general = self.add_channel("general", guild_id=gid, parent_id=int(category["id"]))
        guild["system_channel_id"] = general["id"]
        return guild

    def _guild(self, guild_id: int | None) -> dict[str, Any]:
        gid = self.guild_id if guild_id is None else guild_id
        try:
            return self.guilds[gid]
        except KeyError:
            raise KeyError(f"FakeDiscord has no guild {gid}") from None

    @staticmethod
    def _role_payload(role_id: int, name: str, permissions: int, *, position: int) -> dict[str, Any]:
        return {
            "id": str(role_id),
            "name": name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            "permissions": str(permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    def add_role(self, name: str, permissions: int = 0, *, guild_id: int | None = None) -> dict[str, Any]:
        guild = self._guild(guild_id)
        role = self._role_payload(self.snowflake(), name, permissions, position=len(guild["roles"]))
        guild["roles"].append(role)
        return role

    def add_channel(
        self,
        name: str,
        *,
        type: int = 0,
        guild_id: int | None = None,
        parent_id: int | None = None,
        permission_overwrites: Sequence[Mapping[str, Any]] = (),
        topic: str | None = None,
        nsfw: bool = False,
    ) -> dict[str, Any]:
        """A guild channel (type 0 text, 2 voice, 4 category, 5 announcement, 15 forum).
        ``permission_overwrites`` items: ``{"id": role_or_user_id, "type": 0 role/1 member,
        "allow": int|str, "deny": int|str}``."""
        guild = self._guild(guild_id)
        cid = self.snowflake()
        channel: dict[str, Any] = {
            "id": str(cid),
            "type": type,
            "guild_id": guild["id"],
            "name": name,
            "position": sum(1 for c in guild["channels"] if c["type"] == type),
            "permission_overwrites": [
                {
                    "id": str(o["id"]),
                    "type": o["type"],
                    "allow": str(o.get("allow", 0)),
                    "deny": str(o.get("deny", 0)),
                }
                for o in permission_overwrites
            ],
            "parent_id": _sf(parent_id),
            "nsfw": nsfw,
            "flags": 0,
        }
        if type in (0, 5, 15):
            channel.update(
                topic=topic, last_message_id=None, rate_limit_per_user=0, default_auto_archive_duration=1440
            )
        if type == 2:
            channel.update(
                bitrate=64000, user_limit=0, rtc_region=None, last_message_id=None, rate_limit_per_user=0
            )
        guild["channels"].append(channel)
        self.channels[cid] = channel
        return channel

    def add_member(
        self,
        user_id: int | None = None,
        name: str = "member",
        roles: Iterable[int] = (),
        permissions: int | None = None,
        *,
        guild_id: int | None = None,
        nick: str | None = None,
        bot: bool = False,
    ) -> dict[str, Any]:
        """Add (or re-add) a guild member. ``permissions`` overrides the *computed* channel
        permissions sent in interactions' ``member.permissions`` (roles stay as given)."""
        guild = self._guild(guild_id)
        uid = user_id if user_id is not None else self.snowflake()
        user = self.users.get(uid) or self.add_user(name, user_id=uid, bot=bot)
        member = {
            "user": user,
            "nick": nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in roles],
            "joined_at": _now_iso(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        guild["members"] = [m for m in guild["members"] if m["user"]["id"] != str(uid)] + [member]
        if permissions is not None:
            self._member_permissions[(int(guild["id"]), uid)] = permissions
        return member

    def member(self, user_id: int, guild_id: int | None = None) -> dict[str, Any] | None:
        guild = self._guild(guild_id)
        return next((m for m in guild["members"] if m["user"]["id"] == str(user_id)), None)

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> dict[str, Any]:
        """A user-uploaded attachment (for ATTACHMENT options), served by the fake's CDN route.
        Returns the payload Discord puts in ``data.resolved.attachments``."""
        ctype = content_type or mimetypes.guess_type(filename)[0]
        att = self._new_attachment(filename, ctype, data)
        att.width, att.height, att.ephemeral = width, height, True
        return att.to_payload()

    def _new_attachment(self, filename: str, content_type: str | None, data: bytes) -> StoredAttachment:
        aid = self.snowflake()
        url = f"{self.base_url}/attachments/{aid}/{quote(filename)}"
        att = StoredAttachment(aid, filename, content_type, data, url=url, proxy_url=url)
        self.attachments[aid] = att
        return att

    def expire_token(self, token: str) -> None:
        """Make an interaction token invalid now (as if its 15 minutes had passed)."""
        self._interactions_by_token[token].expired = True

    def delete_message(self, message_id: int) -> None:
        """Delete a message behind the bot's back: later fetches/edits get 404 10008."""
        self.messages[message_id].deleted = True

    def get_command(self, name: str, guild_id: int | None = None, *, type: int = 1) -> dict[str, Any] | None:
        """A registered command (guild scope if ``guild_id``, else global)."""
        return next(
            (c for c in self._commands.get(guild_id, {}).values() if c["name"] == name and c["type"] == type),
            None,
        )

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        return list(self._commands.get(guild_id, {}).values())

    # ----------------------------------------------------------------------------- permissions

    def _base_permissions(self, guild: dict[str, Any], user_id: int) -> int:
        if guild["owner_id"] == str(user_id):
            return Permission.ALL
        member = self.member(user_id, int(guild["id"]))
        roles = {r["id"]: r for r in guild["roles"]}
        perms = int(roles[guild["id"]]["permissions"])
        for rid in member["roles"] if member else []:
            if rid in roles:
                perms |= int(roles[rid]["permissions"])
        return Permission.ALL if perms & Permission.ADMINISTRATOR else perms

    def permissions_in(self, channel_id: int, user_id: int) -> int:
        """Effective permissions like Discord computes them (base + channel overwrites)."""
        channel = self.channels[channel_id]
        if channel.get("guild_id") is None:
            return Permission.ALL & ~Permission.ADMINISTRATOR
        guild = self.guilds[int(channel["guild_id"])]
        perms = self._base_permissions(guild, user_id)
        if perms & Permission.ADMINISTRATOR:
            return Permission.ALL
        overwrites = {o["id"]: o for o in channel.get("permission_overwrites", [])}
        if everyone := overwrites.get(guild["id"]):
            perms = (perms & ~int(everyone["deny"])) | int(everyone["allow"])
        member = self.member(user_id, int(guild["id"]))
        allow = deny = 0
        for rid in member["roles"] if member else []:
            if (o := overwrites.get(rid)) is not None:
                allow |= int(o["allow"])
                deny |= int(o["deny"])
        perms = (perms & ~deny) | allow
        if (o := overwrites.get(str(user_id))) is not None:
            perms = (perms & ~int(o["deny"])) | int(o["allow"])
        if not perms & Permission.VIEW_CHANNEL:
            return 0
        return perms

    # ----------------------------------------------------------------------------- gateway

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0, compress=False)
        await ws.prepare(request)
        conn = _GatewayConnection(id=next(self._conn_ids), ws=ws, query=dict(request.query))
        self._connections.append(conn)
        try:
            await conn.send(
                {
                    "op": _Op.HELLO,
                    "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                    "s": None,
                    "t": None,
                }
            )
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    raw = msg.data if isinstance(msg.data, str) else msg.data.decode()
                    try:
                        payload = json.loads(raw)
                    except ValueError:
                        await ws.close(code=4002, message=b"Error while decoding payload.")
                        break
                    self.gateway_received.append({"connection": conn.id, **payload})
                    await self._on_gateway_payload(conn, payload)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if conn in self._connections:
                self._connections.remove(conn)
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                # A client-initiated 1000/1001 close ends the session; anything else may RESUME.
                if not conn.closed_by_server and ws.close_code in (1000, 1001):
                    self._sessions.pop(session.id, None)
            await self._notify()
        return ws

    async def _on_gateway_payload(self, conn: _GatewayConnection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == _Op.HEARTBEAT:
            if self.ack_heartbeats:
                await conn.send({"op": _Op.HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == _Op.IDENTIFY:
            await self._identify(conn, data or {})
        elif op == _Op.RESUME:
            await self._resume(conn, data or {})
        elif op == _Op.REQUEST_GUILD_MEMBERS:
            await self._request_members(conn, data or {})
        elif op in (_Op.PRESENCE_UPDATE, _Op.VOICE_STATE_UPDATE):
            pass  # recorded in gateway_received; nothing to answer
        else:
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self, conn: _GatewayConnection, data: dict[str, Any]) -> None:
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int):
            await conn.ws.close(code=4013, message=b"Invalid intent(s).")
            return
        if intents & Intent.PRIVILEGED & ~self.privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard_id, shard_count = data.get("shard") or (0, 1)
        if shard_count < 1 or not 0 <= shard_id < shard_count:
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        session = _GatewaySession(id=secrets.token_hex(16), intents=intents, shard=(shard_id, shard_count))
        self._sessions[session.id] = session
        session.conn = conn
        conn.session = session
        guilds = [g for g in self.guilds.values() if (int(g["id"]) >> 22) % shard_count == shard_id]
        ready = {
            "v": API_VERSION,
            "user": self._me,
            "guilds": [{"id": g["id"], "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "shard": [shard_id, shard_count],
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "user_settings": {},
            "geo_ordered_rtc_regions": ["us-east"],
            "auth": {},
        }
        await self._send_dispatch(session, "READY", ready)
        # Real Discord streams GUILD_CREATEs after READY (lazy guilds); discord.py holds on_ready
        # until ``guild_ready_timeout`` seconds pass without another one.
        for guild in guilds:
            await self._send_dispatch(session, "GUILD_CREATE", self._guild_create_payload(guild, intents))
        conn.ready = True
        self.identify_count += 1
        await self._notify()

    async def _resume(self, conn: _GatewayConnection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        session = self._sessions.get(str(data.get("session_id")))
        if session is None:
            await conn.send({"op": _Op.INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if session.conn is not None and session.conn is not conn:
            old = session.conn
            old.closed_by_server = True
            with contextlib.suppress(Exception):
                await old.ws.close(code=4000)
        last_seen = data.get("seq") or 0
        # Attach and replay under the session lock so a concurrent dispatch() cannot slip a newer
        # frame in before the missed ones (discord.py keeps whatever ``s`` it saw last).
        async with session.lock:
            session.conn = conn
            conn.session = session
            for frame in [f for f in session.history if f["s"] > last_seen]:
                await conn.send(frame)
        await self._send_dispatch(session, "RESUMED", {})
        conn.ready = True
        self.resume_count += 1
        await self._notify()

    async def _request_members(self, conn: _GatewayConnection, data: dict[str, Any]) -> None:
        session = conn.session
        if session is None:
            await conn.ws.close(code=4003, message=b"Not authenticated.")
            return
        guild = self.guilds.get(int(data.get("guild_id", 0)))
        members = guild["members"] if guild else []
        query = (data.get("query") or "").lower()
        user_ids = {str(u) for u in data.get("user_ids") or []}
        if user_ids:
            members = [m for m in members if m["user"]["id"] in user_ids]
        elif query:
            members = [m for m in members if m["user"]["username"].lower().startswith(query)]
        limit = data.get("limit") or 0
        if limit:
            members = members[:limit]
        chunk = {
            "guild_id": str(data.get("guild_id")),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    def _guild_create_payload(self, guild: dict[str, Any], intents: int) -> dict[str, Any]:
        payload = json.loads(json.dumps(guild))
        member_count = len(guild["members"])
        large = member_count >= 250
        # Without GUILD_PRESENCES (or in large guilds) Discord only includes the bot's own member;
        # discord.py then chunks over op 8 if GUILD_MEMBERS is on and chunk_guilds_at_startup.
        if not (intents & Intent.GUILD_PRESENCES) or large:
            payload["members"] = [
                m for m in payload["members"] if m["user"]["id"] == str(self.application_id)
            ]
        payload.update(
            unavailable=False,
            large=large,
            member_count=member_count,
            voice_states=[],
            presences=[],
            threads=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
        return payload

    async def _send_dispatch(self, session: _GatewaySession, event: str, data: Any) -> None:
        async with session.lock:
            session.seq += 1
            frame = {"op": _Op.DISPATCH, "d": data, "s": session.seq, "t": event}
            session.history.append(frame)
            conn = session.conn
            if conn is not None:
                with contextlib.suppress(ConnectionResetError, RuntimeError):
                    await conn.send(frame)

    async def dispatch(self, event: str, data: Any, *, intent: int | None = None) -> int:
        """Send a DISPATCH (op 0) to every session; sessions that are momentarily disconnected get
        it replayed on RESUME. ``intent``: only sessions that identified with that intent bit.
        Returns how many live connections it was sent to."""
        sent = 0
        for session in list(self._sessions.values()):
            if intent is not None and not session.intents & intent:
                continue
            if session.conn is not None and session.conn.ready:
                sent += 1
            await self._send_dispatch(session, event, data)
        return sent

    async def announce_guild(self, guild_id: int) -> None:
        """Send GUILD_CREATE for a guild added after clients connected (the bot "joined" it)."""
        guild = self._guild(guild_id)
        for session in list(self._sessions.values()):
            await self._send_dispatch(
                session, "GUILD_CREATE", self._guild_create_payload(guild, session.intents)
            )

    @property
    def connected(self) -> bool:
        return any(c.ready for c in self._connections)

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until some client has completed IDENTIFY (READY + GUILD_CREATEs sent) or RESUME."""
        await self._wait(lambda: self.connected or None, timeout, "a gateway client to connect")

    async def wait_disconnected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await self._wait(
            lambda: (not self._connections) or None, timeout, "all gateway clients to disconnect"
        )

    async def wait_for_gateway_payload(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """A payload a client sent over the gateway (e.g. ``lambda p: p["op"] == 6`` for RESUME)."""

        def find() -> dict[str, Any] | None:
            return next((p for p in self.gateway_received if predicate(p)), None)

        return await self._wait(find, timeout, "a gateway payload")

    async def disconnect_clients(self, code: int = 4000, *, invalidate_sessions: bool = False) -> None:
        """Close every gateway connection with ``code``. Sessions stay resumable unless
        ``invalidate_sessions`` (then RESUME gets op 9 and the client re-IDENTIFYs)."""
        for conn in list(self._connections):
            conn.closed_by_server = True
            conn.ready = False
            if conn in self._connections:
                self._connections.remove(conn)
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            with contextlib.suppress(Exception):
                await conn.ws.close(code=code)
        if invalidate_sessions:
            self._sessions.clear()
        await self._notify()

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client closes and RESUMEs."""
        for conn in list(self._connections):
            await conn.send({"op": _Op.RECONNECT, "d": None, "s": None, "t": None})

    # ----------------------------------------------------------------------------- HTTP plumbing

    def _build_routes(self) -> list[_RouteSpec]:
        bot: list[tuple[str, str, _Handler]] = [
            ("GET", "/users/@me", self._get_me),
            ("GET", "/users/{user_id}", self._get_user),
            ("POST", "/users/@me/channels", self._create_dm),
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", ROUTE_GLOBAL_COMMANDS, self._list_commands),
            ("PUT", ROUTE_GLOBAL_COMMANDS, self._put_commands),
            ("POST", ROUTE_GLOBAL_COMMANDS, self._post_command),
            ("GET", ROUTE_GLOBAL_COMMANDS + "/{command_id}", self._get_command),
            ("PATCH", ROUTE_GLOBAL_COMMANDS + "/{command_id}", self._patch_command),
            ("DELETE", ROUTE_GLOBAL_COMMANDS + "/{command_id}", self._delete_command),
            ("GET", ROUTE_GUILD_COMMANDS, self._list_commands),
            ("PUT", ROUTE_GUILD_COMMANDS, self._put_commands),
            ("POST", ROUTE_GUILD_COMMANDS, self._post_command),
            ("GET", ROUTE_GUILD_COMMANDS + "/{command_id}", self._get_command),
            ("PATCH", ROUTE_GUILD_COMMANDS + "/{command_id}", self._patch_command),
            ("DELETE", ROUTE_GUILD_COMMANDS + "/{command_id}", self._delete_command),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("GET", ROUTE_CHANNEL_MESSAGES, self._list_messages),
            ("POST", ROUTE_CHANNEL_MESSAGES, self._create_channel_message),
            ("GET", ROUTE_CHANNEL_MESSAGE, self._get_channel_message),
            ("PATCH", ROUTE_CHANNEL_MESSAGE, self._edit_channel_message),
            ("DELETE", ROUTE_CHANNEL_MESSAGE, self._delete_channel_message),
            ("PUT", ROUTE_CHANNEL_MESSAGE + "/reactions/{emoji}/@me", self._add_reaction),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("GET", "/guilds/{guild_id}", self._get_guild),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels),
            ("GET", "/guilds/{guild_id}/roles", self._get_guild_roles),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member),
        ]
        # Interaction routes authenticate with the token in the URL, not the bot token.
        # "@original" must precede "{message_id}", which would also match it.
        public: list[tuple[str, str, _Handler]] = [
            ("POST", ROUTE_CALLBACK, self._interaction_callback),
            ("GET", ROUTE_ORIGINAL, self._get_webhook_message),
            ("PATCH", ROUTE_ORIGINAL, self._edit_webhook_message),
            ("DELETE", ROUTE_ORIGINAL, self._delete_webhook_message),
            ("POST", ROUTE_WEBHOOK, self._execute_webhook),
            ("GET", ROUTE_WEBHOOK_MESSAGE, self._get_webhook_message),
            ("PATCH", ROUTE_WEBHOOK_MESSAGE, self._edit_webhook_message),
            ("DELETE", ROUTE_WEBHOOK_MESSAGE, self._delete_webhook_message),
        ]
        specs = []
        for routes, auth in ((public, False), (bot, True)):
            for method, template, handler in routes:
                pattern = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
                # Snowflake params only match digits, so "/users/@me" never hits "/users/{user_id}".
                pattern = re.sub(r"{(\w+_id)}", r"(?P<\1>\\d+)", pattern)
                pattern = re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", pattern)
                specs.append(_RouteSpec(method, template, handler, auth, re.compile(f"^{pattern}$")))
        return specs

    async def _read_body(self, request: web.Request) -> tuple[Any, list[RecordedFile]]:
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith("multipart/"):
            payload: Any = None
            files: list[RecordedFile] = []
            reader = await request.multipart()
            async for part in reader:
                if part is None:
                    break
                name = part.name or ""
                data = await part.read(decode=False)  # type: ignore[union-attr]
                if name == "payload_json":
                    payload = json.loads(data)
                elif m := re.fullmatch(r"files\[(\d+)\]", name):
                    files.append(
                        RecordedFile(
                            field_name=name,
                            index=int(m.group(1)),
                            filename=part.filename or name,  # type: ignore[union-attr]
                            content_type=part.headers.get("Content-Type"),
                            data=bytes(data),
                        )
                    )
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        if "json" in ctype:
            try:
                return json.loads(raw), []
            except ValueError as exc:
                raise _ApiError(400, 50109, "The request body contains invalid JSON.") from exc
        return raw.decode(errors="replace"), []

    def _match(self, method: str, path: str) -> tuple[_RouteSpec | None, dict[str, str], bool]:
        """(spec, params, path_known) — path_known without spec means 405."""
        path_known = False
        for spec in self._routes:
            m = spec.regex.match(path)
            if m is None:
                continue
            path_known = True
            if spec.method == method:
                return spec, m.groupdict(), True
        return None, {}, path_known

    async def _http_entry(self, request: web.Request) -> web.StreamResponse:
        prefix = f"/api/v{API_VERSION}"
        full_path = request.path
        is_api = full_path.startswith(prefix + "/")
        path = full_path[len(prefix) :] if is_api else full_path
        record = RecordedRequest(
            seq=next(self._request_seq),
            method=request.method,
            route=None,
            path=path,
            params={},
            query=dict(request.query),
            headers=dict(request.headers),
            json=None,
            files=[],
            at=self.clock(),
        )
        try:
            record.json, record.files = await self._read_body(request)
        except _ApiError as err:
            return await self._finish(record, self._json(err.status, err.body))

        if not is_api:
            return await self._finish(record, await self._serve_static(record, path))

        spec, params, path_known = self._match(request.method, path)
        if spec is None:
            status = 405 if path_known else 404
            code, message = _DEFAULT_ERROR_BODIES[status]
            return await self._finish(record, self._json(status, {"message": message, "code": code}))
        record.route, record.params = spec.template, params

        fault = self.faults.match(record)
        if fault is not None:
            record.fault = fault
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                return await self._finish(record, self._fault_response(fault))

        if spec.bot_auth and record.headers.get("Authorization") != f"Bot {self.token}":
            return await self._finish(record, self._json(401, {"message": "401: Unauthorized", "code": 0}))
        try:
            response = await spec.handler(_Call(request, record))
        except _ApiError as err:
            response = self._json(err.status, err.body, err.headers)
        except Exception as exc:  # a bug in the fake: fail loudly, but without discord.py's 5xx retries
            self.internal_errors.append(exc)
            response = self._json(400, {"message": f"FakeDiscord internal error: {exc!r}", "code": 0})
        return await self._finish(record, response)

    async def _finish(self, record: RecordedRequest, response: web.StreamResponse) -> web.StreamResponse:
        record.status = response.status
        if (
            isinstance(response, web.Response)
            and response.content_type == "application/json"
            and response.body
        ):
            record.response_json = json.loads(response.body)  # type: ignore[arg-type]
        self.requests.append(record)
        await self._notify()
        return response

    @staticmethod
    def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
        if status == 204:
            return web.Response(status=204, headers=headers)
        # Exactly "application/json" like Discord: discord.py's json_or_text() compares the header
        # verbatim, so aiohttp's default "application/json; charset=utf-8" would yield a str body.
        return web.Response(
            body=json.dumps(body).encode(),
            status=status,
            headers={**(headers or {}), "Content-Type": "application/json"},
        )

    def _fault_response(self, fault: Fault) -> web.Response:
        status = fault.status or 500
        code, message = _DEFAULT_ERROR_BODIES.get(status, (0, f"{status}: Error"))
        body = fault.json if fault.json is not None else {"message": message, "code": code}
        headers = dict(fault.headers)
        if status == 429:
            retry_after = fault.retry_after if fault.retry_after is not None else 0.1
            if fault.json is None:
                body = {"message": message, "retry_after": retry_after, "global": fault.is_global}
            limit_headers = self._rate_limit_headers(retry_after, too_many=True, is_global=fault.is_global)
            headers = {**limit_headers, **headers}
        return self._json(status, body, headers)

    @staticmethod
    def _rate_limit_headers(
        reset_after: float,
        *,
        remaining: int = 0,
        limit: int = 1,
        bucket: str = "fake-bucket",
        too_many: bool = False,
        is_global: bool = False,
    ) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }
        if too_many:
            # discord.py treats a 429 *without* a Via header as a Cloudflare ban and raises at once.
            headers["Retry-After"] = str(max(1, int(reset_after + 0.999)))
            headers["X-RateLimit-Scope"] = "shared" if is_global else "user"
            headers["Via"] = "1.1 google"
            if is_global:
                headers["X-RateLimit-Global"] = "true"
        return headers

    def _check_rate_limit(self, limiter: _FixedWindowLimiter | None, key: str) -> dict[str, str]:
        """Raise a 429, or return the X-RateLimit-* headers for the success response (discord.py
        uses them to wait pre-emptively, exactly as with Discord)."""
        if limiter is None:
            return {}
        allowed, remaining, reset_after = limiter.hit(key, self.clock())
        bucket = f"fake-{key.rsplit(':', 1)[-1]}"
        if not allowed:
            self.rate_limited_count += 1
            err = _ApiError(429, 0, "You are being rate limited.")
            err.body = {
                "message": "You are being rate limited.",
                "retry_after": round(reset_after, 3),
                "global": False,
            }
            err.headers = self._rate_limit_headers(
                reset_after, limit=limiter.limit, bucket=bucket, too_many=True
            )
            raise err
        return self._rate_limit_headers(reset_after, remaining=remaining, limit=limiter.limit, bucket=bucket)

    async def _serve_static(self, record: RecordedRequest, path: str) -> web.StreamResponse:
        """The fake CDN: attachment URLs and default avatars."""
        if record.method == "GET" and (m := re.fullmatch(r"/attachments/(\d+)/([^/]+)", path)):
            record.route, record.params = ROUTE_ATTACHMENT, {"attachment_id": m[1], "filename": m[2]}
            att = self.attachments.get(int(m[1]))
            if att is not None:
                return web.Response(
                    body=att.data, content_type=att.content_type or "application/octet-stream"
                )
        if record.method == "GET" and re.fullmatch(r"/embed/avatars/\d+\.png", path):
            record.route = "/embed/avatars/{index}.png"
            return web.Response(body=_PNG_1X1, content_type="image/png")
        return self._json(404, {"message": "404: Not Found", "code": 0})

    # ----------------------------------------------------------------------------- REST: users, app

    @property
    def _me(self) -> dict[str, Any]:
        """The bot user as /users/@me and READY show it (with the private fields)."""
        return {
            **self.bot_user,
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
            "email": None,
            "locale": "en-US",
        }

    async def _get_me(self, call: _Call) -> web.StreamResponse:
        return self._json(200, self._me)

    async def _get_user(self, call: _Call) -> web.StreamResponse:
        user = self.users.get(int(call.params["user_id"]))
        if user is None:
            raise _unknown("User", 10013)
        return self._json(200, user)

    async def _get_gateway(self, call: _Call) -> web.StreamResponse:
        return self._json(200, {"url": self.gateway_url})

    async def _get_gateway_bot(self, call: _Call) -> web.StreamResponse:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return self._json(200, {"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _get_application(self, call: _Call) -> web.StreamResponse:
        return self._json(
            200,
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self.owner_user,
                "team": None,
                "flags": 0,
                "hook": True,
                "bot": self.bot_user,
                "rpc_origins": [],
                "redirect_uris": [],
                "tags": [],
                # Must be null: otherwise discord.py warns that interactions go over HTTP instead.
                "interactions_endpoint_url": None,
                "integration_types_config": {"0": {}},
            },
        )

    async def _create_dm(self, call: _Call) -> web.StreamResponse:
        uid = int(call.body.get("recipient_id", 0))
        if uid not in self.users:
            raise _unknown("User", 10013)
        return self._json(200, self.channels[self._dm_channel_for(uid)])

    # ----------------------------------------------------------------------------- REST: commands

    def _command_scope(self, call: _Call) -> int | None:
        if call.params["application_id"] != str(self.application_id):
            raise _ApiError(403, 50001, "Missing Access")
        if "guild_id" not in call.params:
            return None
        gid = int(call.params["guild_id"])
        if gid not in self.guilds:
            raise _ApiError(403, 50001, "Missing Access")
        return gid

    def _validate_options(
        self, options: Sequence[Mapping[str, Any]], path: str, parent: str = "command"
    ) -> None:
        """Discord's rules: groups (2) only at top level and only holding subcommands (1);
        subcommands hold plain options; required options come first; <= 25 of everything."""
        if len(options) > 25:
            raise _form_error(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        seen_optional = False
        names: set[str] = set()
        for i, opt in enumerate(options):
            where = f"{path}.{i}"
            otype = opt.get("type")
            if otype not in range(1, 12):
                raise _form_error(f"{where}.type", "BASE_TYPE_CHOICES", "Value must be one of 1..11.")
            self._validate_name(opt.get("name"), f"{where}.name")
            if opt["name"] in names:
                raise _form_error(
                    f"{where}.name", "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Duplicate"
                )
            names.add(opt["name"])
            if not 1 <= len(opt.get("description") or "") <= 100:
                raise _form_error(f"{where}.description", "BASE_TYPE_BAD_LENGTH", "Must be 1-100 in length.")
            nesting_ok = {
                "command": True,
                "group": otype == 1,
                "subcommand": otype not in (1, 2),
            }[parent]
            if not nesting_ok:
                raise _form_error(
                    where, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", f"Type {otype} not allowed here"
                )
            if otype in (1, 2):
                inner = "group" if otype == 2 else "subcommand"
                self._validate_options(opt.get("options") or [], f"{where}.options", inner)
                continue
            if opt.get("required"):
                if seen_optional:
                    raise _form_error(
                        where,
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
            if opt.get("choices") and opt.get("autocomplete"):
                raise _form_error(
                    where, "AUTOCOMPLETE_AND_CHOICES", "Autocomplete and choices cannot both be set"
                )
            if len(opt.get("choices") or []) > 25:
                raise _form_error(
                    f"{where}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )

    @staticmethod
    def _validate_name(name: Any, where: str, *, chat_input: bool = True) -> None:
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            raise _form_error(where, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
        if chat_input and (name != name.lower() or not re.fullmatch(r"[-_'\w]+", name)):
            raise _form_error(where, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")

    def _normalize_command(
        self, body: Mapping[str, Any], scope: int | None, index: int, existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        ctype = body.get("type", 1)
        where = str(index)
        self._validate_name(body.get("name"), f"{where}.name", chat_input=ctype == 1)
        desc = body.get("description") or ""
        if ctype == 1 and not 1 <= len(desc) <= 100:
            raise _form_error(
                f"{where}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        options = list(body.get("options") or [])
        if ctype == 1:
            self._validate_options(options, f"{where}.options")
        perms = body.get("default_member_permissions")
        command = {
            "id": existing["id"] if existing else str(self.snowflake()),
            "application_id": str(self.application_id),
            "version": str(self.snowflake()),
            "default_member_permissions": None if perms is None else str(perms),
            "type": ctype,
            "name": body["name"],
            "name_localizations": body.get("name_localizations"),
            "description": desc if ctype == 1 else "",
            "description_localizations": body.get("description_localizations"),
            "dm_permission": body.get("dm_permission", True),
            "contexts": body.get("contexts"),
            "integration_types": body.get("integration_types") or [0],
            "nsfw": bool(body.get("nsfw", False)),
            "options": options,
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        return command

    async def _list_commands(self, call: _Call) -> web.StreamResponse:
        scope = self._command_scope(call)
        return self._json(200, self.commands(scope))

    async def _put_commands(self, call: _Call) -> web.StreamResponse:
        """Bulk overwrite: same (name, type) keeps its id, missing commands are deleted."""
        scope = self._command_scope(call)
        body = call.record.json
        if not isinstance(body, list):
            raise _form_error("_", "BASE_TYPE_ARRAY", "Must be an array.")
        old = {(c["name"], c["type"]): c for c in self.commands(scope)}
        new: dict[int, dict[str, Any]] = {}
        seen: set[tuple[str, int]] = set()
        for index, item in enumerate(body):
            key = (item.get("name"), item.get("type", 1))
            if key in seen:
                raise _form_error(
                    f"{index}.name", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Duplicate command name"
                )
            seen.add(key)
            command = self._normalize_command(item, scope, index, old.get(key))
            new[int(command["id"])] = command
        if sum(1 for c in new.values() if c["type"] == 1) > 100:
            raise _form_error("_", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        self._commands[scope] = new
        return self._json(200, list(new.values()))

    async def _post_command(self, call: _Call) -> web.StreamResponse:
        scope = self._command_scope(call)
        key = (call.body.get("name"), call.body.get("type", 1))
        existing = next((c for c in self.commands(scope) if (c["name"], c["type"]) == key), None)
        command = self._normalize_command(call.body, scope, 0, existing)
        self._commands.setdefault(scope, {})[int(command["id"])] = command
        return self._json(200 if existing else 201, command)

    def _command_or_404(self, call: _Call) -> tuple[int | None, dict[str, Any]]:
        scope = self._command_scope(call)
        command = self._commands.get(scope, {}).get(int(call.params["command_id"]))
        if command is None:
            raise _unknown("application command", 10063)
        return scope, command

    async def _get_command(self, call: _Call) -> web.StreamResponse:
        return self._json(200, self._command_or_404(call)[1])

    async def _patch_command(self, call: _Call) -> web.StreamResponse:
        scope, command = self._command_or_404(call)
        merged = {**command, **call.body}
        updated = self._normalize_command(merged, scope, 0, command)
        self._commands[scope][int(command["id"])] = updated
        return self._json(200, updated)

    async def _delete_command(self, call: _Call) -> web.StreamResponse:
        scope, command = self._command_or_404(call)
        del self._commands[scope][int(command["id"])]
        return self._json(204, None)

    # ----------------------------------------------------------------------------- REST: guilds

    def _guild_or_404(self, call: _Call) -> dict[str, Any]:
        guild = self.guilds.get(int(call.params["guild_id"]))
        if guild is None:
            raise _unknown("Guild", 10004)
        return guild

    async def _get_guild(self, call: _Call) -> web.StreamResponse:
        guild = self._guild_or_404(call)
        payload = {k: v for k, v in guild.items() if k not in ("channels", "members", "joined_at")}
        if call.record.query.get("with_counts") in ("1", "true", "True"):
            payload.update(approximate_member_count=len(guild["members"]), approximate_presence_count=0)
        return self._json(200, payload)

    async def _get_guild_channels(self, call: _Call) -> web.StreamResponse:
        return self._json(200, self._guild_or_404(call)["channels"])

    async def _get_guild_roles(self, call: _Call) -> web.StreamResponse:
        return self._json(200, self._guild_or_404(call)["roles"])

    async def _get_member(self, call: _Call) -> web.StreamResponse:
        guild = self._guild_or_404(call)
        member = self.member(int(call.params["user_id"]), int(guild["id"]))
        if member is None:
            raise _unknown("Member", 10007)
        return self._json(200, member)

    # ----------------------------------------------------------------------------- REST: channels

    def _channel_or_404(self, call: _Call) -> dict[str, Any]:
        channel = self.channels.get(int(call.params["channel_id"]))
        if channel is None:
            raise _unknown("Channel", 10003)
        return channel

    def _require_bot_permissions(self, channel: dict[str, Any], needed: int) -> None:
        if channel.get("guild_id") is None:
            return
        perms = self.permissions_in(int(channel["id"]), self.application_id)
        if not perms & Permission.VIEW_CHANNEL:
            raise _ApiError(403, 50001, "Missing Access")
        if perms & needed != needed:
            raise _ApiError(403, 50013, "Missing Permissions")

    async def _get_channel(self, call: _Call) -> web.StreamResponse:
        channel = self._channel_or_404(call)
        self._require_bot_permissions(channel, Permission.VIEW_CHANNEL)
        return self._json(200, channel)

    async def _typing(self, call: _Call) -> web.StreamResponse:
        self._require_bot_permissions(self._channel_or_404(call), Permission.SEND_MESSAGES)
        return self._json(204, None)

    def _visible_message(self, call: _Call) -> StoredMessage:
        """Channel routes cannot see ephemeral or deleted messages."""
        msg = self.messages.get(int(call.params["message_id"]))
        if msg is None or msg.deleted or msg.ephemeral or str(msg.channel_id) != call.params["channel_id"]:
            raise _unknown("Message", 10008)
        return msg

    async def _list_messages(self, call: _Call) -> web.StreamResponse:
        channel = self._channel_or_404(call)
        self._require_bot_permissions(channel, Permission.READ_MESSAGE_HISTORY)
        q = call.record.query
        limit = max(1, min(100, int(q.get("limit", 50))))
        msgs = sorted(
            (
                m
                for m in self.messages.values()
                if m.channel_id == int(channel["id"]) and not m.deleted and not m.ephemeral
            ),
            key=lambda m: m.id,
        )
        if "before" in q:
            msgs = [m for m in msgs if m.id < int(q["before"])][-limit:]
        elif "after" in q:
            msgs = [m for m in msgs if m.id > int(q["after"])][:limit]
        elif "around" in q:
            around = int(q["around"])
            older = [m for m in msgs if m.id <= around][-((limit + 1) // 2) :]
            newer = [m for m in msgs if m.id > around][: limit // 2]
            msgs = older + newer
        else:
            msgs = msgs[-limit:]
        return self._json(200, [m.to_payload() for m in reversed(msgs)])

    async def _get_channel_message(self, call: _Call) -> web.StreamResponse:
        self._require_bot_permissions(self._channel_or_404(call), Permission.READ_MESSAGE_HISTORY)
        return self._json(200, self._visible_message(call).to_payload())

    async def _create_channel_message(self, call: _Call) -> web.StreamResponse:
        channel = self._channel_or_404(call)
        headers = self._check_rate_limit(self._channel_limiter, f"{channel['id']}:messages")
        needed = Permission.SEND_MESSAGES | (Permission.ATTACH_FILES if call.record.files else 0)
        self._require_bot_permissions(channel, needed)
        if channel["type"] == 1 and int(channel["recipients"][0]["id"]) in self.dm_closed_users:
            raise _ApiError(403, 50007, "Cannot send messages to this user")
        body = call.body
        msg = StoredMessage(
            id=self.snowflake(),
            channel_id=int(channel["id"]),
            guild_id=None if channel.get("guild_id") is None else int(channel["guild_id"]),
            author=self.bot_user,
            type=19 if body.get("message_reference") else 0,
            tts=bool(body.get("tts")),
            nonce=body.get("nonce"),
            message_reference=body.get("message_reference"),
        )
        self._apply_message_body(msg, body, call.record.files, creating=True, allowed_flags=_CHANNEL_FLAGS)
        await self._store_new_message(msg)
        return self._json(200, msg.to_payload(), headers)

    async def _edit_channel_message(self, call: _Call) -> web.StreamResponse:
        channel = self._channel_or_404(call)
        headers = self._check_rate_limit(self._channel_limiter, f"{channel['id']}:messages")
        msg = self._visible_message(call)
        if msg.author["id"] != self.bot_user["id"]:
            raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        await self._edit_message(msg, call)
        return self._json(200, msg.to_payload(), headers)

    async def _delete_channel_message(self, call: _Call) -> web.StreamResponse:
        channel = self._channel_or_404(call)
        msg = self._visible_message(call)
        if msg.author["id"] != self.bot_user["id"]:
            self._require_bot_permissions(channel, Permission.MANAGE_MESSAGES)
        await self._remove_message(msg)
        return self._json(204, None)

    async def _add_reaction(self, call: _Call) -> web.StreamResponse:
        self._require_bot_permissions(self._channel_or_404(call), Permission.ADD_REACTIONS)
        self._visible_message(call)
        return self._json(204, None)

    # ----------------------------------------------------------------------------- messages

    def _number_components(self, components: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Discord fills in a sequential numeric ``id`` on every component that lacks one."""
        components = json.loads(json.dumps(components))
        used = set()

        def walk(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for c in items:
                yield c
                yield from walk(c.get("components") or [])
                for key in ("accessory", "component"):
                    if isinstance(c.get(key), dict):
                        yield from walk([c[key]])

        for c in walk(components):
            if isinstance(c.get("id"), int):
                used.add(c["id"])
        counter = itertools.count(1)
        for c in walk(components):
            if "id" not in c or c["id"] is None:
                c["id"] = next(i for i in counter if i not in used)
        return components

    def _apply_message_body(
        self,
        msg: StoredMessage,
        body: Mapping[str, Any],
        files: list[RecordedFile],
        *,
        creating: bool,
        allowed_flags: int,
    ) -> None:
        """Validate + apply a create/edit body (Discord semantics) to ``msg``; raise _ApiError."""
        if len(files) > _MAX_FILES:
            raise _form_error("files", "BASE_TYPE_MAX_LENGTH", f"Must be {_MAX_FILES} or fewer in length.")
        for f in files:
            if f.size > self.attachment_size_limit:
                raise _ApiError(413, 40005, "Request entity too large")
        content = msg.content
        if "content" in body:
            content = "" if body["content"] is None else str(body["content"])
        if len(content) > _MAX_CONTENT:
            raise _form_error(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {_MAX_CONTENT} or fewer in length."
            )
        embeds = msg.embeds if "embeds" not in body else list(body["embeds"] or [])
        if len(embeds) > _MAX_EMBEDS:
            raise _form_error("embeds", "BASE_TYPE_MAX_LENGTH", f"Must be {_MAX_EMBEDS} or fewer in length.")
        if sum(_embed_chars(e) for e in embeds) > _MAX_EMBED_CHARS:
            raise _form_error("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        flags = msg.flags
        if body.get("flags") is not None:
            requested = int(body["flags"])
            if creating:
                flags = (flags & (MessageFlag.EPHEMERAL | MessageFlag.LOADING)) | (requested & allowed_flags)
            else:
                # Edits may toggle SUPPRESS_EMBEDS and switch a message to components v2 (not back).
                flags = (flags & ~MessageFlag.SUPPRESS_EMBEDS) | (requested & MessageFlag.SUPPRESS_EMBEDS)
                flags |= requested & MessageFlag.IS_COMPONENTS_V2
        components = msg.components
        if "components" in body:
            components = self._number_components(list(body["components"] or []))
        if flags & MessageFlag.IS_COMPONENTS_V2 and (content or embeds):
            raise _form_error(
                "content",
                "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                "The 'content' and 'embeds' fields cannot be used when using MessageFlags.IS_COMPONENTS_V2",
            )

        by_index = {f.index: f for f in files}
        used: set[int] = set()
        attachments: list[StoredAttachment] = []
        ephemeral = bool(flags & MessageFlag.EPHEMERAL)

        def upload(f: RecordedFile, spec: Mapping[str, Any]) -> StoredAttachment:
            filename = spec.get("filename") or f.filename
            att = self._new_attachment(filename, mimetypes.guess_type(filename)[0], f.data)
            att.description, att.title, att.ephemeral = spec.get("description"), spec.get("title"), ephemeral
            used.add(f.index)
            return att

        if body.get("attachments") is not None:
            keep = {a.id: a for a in msg.attachments}
            for i, spec in enumerate(body["attachments"]):
                aid = int(spec.get("id", -1))
                if aid in keep:
                    attachments.append(keep[aid])
                elif aid in by_index:
                    attachments.append(upload(by_index[aid], spec))
                else:
                    raise _form_error(f"attachments.{i}.id", "ATTACHMENT_NOT_FOUND", "Unknown attachment")
        else:
            attachments = [] if creating else list(msg.attachments)
        # Files nobody referenced are still uploaded (Discord appends them).
        attachments += [upload(f, {}) for f in files if f.index not in used]

        has_body = (
            content or embeds or attachments or components or body.get("sticker_ids") or body.get("poll")
        )
        if not has_body and not flags & MessageFlag.LOADING:
            raise _ApiError(400, 50006, "Cannot send an empty message")

        msg.content, msg.embeds, msg.components, msg.flags, msg.attachments = (
            content,
            embeds,
            components,
            flags,
            attachments,
        )
        if "allowed_mentions" in body:
            msg.allowed_mentions = body["allowed_mentions"]
        for key in ("sticker_ids", "poll"):
            if key in body:
                msg.extra[key] = body[key]

    async def _store_new_message(self, msg: StoredMessage) -> None:
        self.messages[msg.id] = msg
        channel = self.channels.get(msg.channel_id)
        if channel is not None and "last_message_id" in channel and not msg.ephemeral:
            channel["last_message_id"] = str(msg.id)
        await self._dispatch_message_event("MESSAGE_CREATE", msg)
        await self._notify()

    async def _edit_message(self, msg: StoredMessage, call: _Call) -> None:
        before = msg.to_payload()
        allowed = _INTERACTION_FLAGS if msg.interaction_id else _CHANNEL_FLAGS
        self._apply_message_body(msg, call.body, call.record.files, creating=False, allowed_flags=allowed)
        msg.flags &= ~MessageFlag.LOADING  # any edit of a "thinking" message completes it
        msg.edited_timestamp = _now_iso()
        msg.edits.append(
            MessageEdit(
                at=self.clock(),
                route=call.record.route or "",
                changes=call.body,
                files=call.record.files,
                before=before,
            )
        )
        await self._dispatch_message_event("MESSAGE_UPDATE", msg)
        await self._notify()

    async def _remove_message(self, msg: StoredMessage) -> None:
        msg.deleted = True
        if self.dispatch_message_events and not msg.ephemeral:
            data: dict[str, Any] = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id is not None:
                data["guild_id"] = str(msg.guild_id)
            await self.dispatch("MESSAGE_DELETE", data, intent=self._message_intent(msg))
        await self._notify()

    @staticmethod
    def _message_intent(msg: StoredMessage) -> int:
        return Intent.GUILD_MESSAGES if msg.guild_id is not None else Intent.DIRECT_MESSAGES

    async def _dispatch_message_event(self, event: str, msg: StoredMessage) -> None:
        if not self.dispatch_message_events or msg.ephemeral:
            return
        data = msg.to_payload()
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
            member = self.member(int(msg.author["id"]), msg.guild_id)
            if member is not None:
                data["member"] = {k: v for k, v in member.items() if k != "user"}
        await self.dispatch(event, data, intent=self._message_intent(msg))

    # ----------------------------------------------------------------------------- interactions: HTTP

    def _interaction_for_webhook(self, call: _Call) -> _Interaction:
        if call.params["webhook_id"] != str(self.application_id):
            raise _unknown("Webhook", 10015)
        interaction = self._interactions_by_token.get(call.params["webhook_token"])
        if interaction is None or self._token_expired(interaction):
            raise _ApiError(401, 50027, "Invalid Webhook Token")
        return interaction

    def _token_expired(self, interaction: _Interaction) -> bool:
        return interaction.expired or self.clock() - interaction.created_at > self.token_ttl_seconds

    def _interaction_message_base(self, interaction: _Interaction, *, followup: bool) -> StoredMessage:
        meta: dict[str, Any] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": interaction.user,
            "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
        }
        if followup and interaction.original_message_id is not None:
            meta["original_response_message_id"] = str(interaction.original_message_id)
        if interaction.source_message_id is not None:
            meta["interacted_message_id"] = str(interaction.source_message_id)
        return StoredMessage(
            id=self.snowflake(),
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            author=self.bot_user,
            type=20 if interaction.type == _ITYPE_APPLICATION_COMMAND else 0,
            webhook_id=self.application_id,
            application_id=self.application_id,
            interaction_id=interaction.id,
            interaction_token=interaction.token,
            interaction_metadata=meta,
            interaction_name=interaction.name,
        )

    async def _interaction_callback(self, call: _Call) -> web.StreamResponse:
        interaction = self._interactions.get(int(call.params["webhook_id"]))
        if interaction is None or interaction.token != call.params["webhook_token"]:
            raise _unknown("interaction", 10062)
        deadline = self.callback_deadline_seconds
        if deadline is not None and self.clock() - interaction.created_at > deadline:
            raise _unknown("interaction", 10062)
        if interaction.callback_type is not None:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        body = call.body
        ctype = body.get("type")
        data = body.get("data") or {}
        allowed = {
            _ITYPE_APPLICATION_COMMAND: {_CB_CHANNEL_MESSAGE, _CB_DEFERRED_CHANNEL_MESSAGE, _CB_MODAL},
            _ITYPE_COMPONENT: {
                _CB_CHANNEL_MESSAGE,
                _CB_DEFERRED_CHANNEL_MESSAGE,
                _CB_DEFERRED_UPDATE_MESSAGE,
                _CB_UPDATE_MESSAGE,
                _CB_MODAL,
            },
            _ITYPE_AUTOCOMPLETE: {_CB_AUTOCOMPLETE_RESULT},
            _ITYPE_MODAL_SUBMIT: {_CB_CHANNEL_MESSAGE, _CB_DEFERRED_CHANNEL_MESSAGE}
            | ({_CB_DEFERRED_UPDATE_MESSAGE, _CB_UPDATE_MESSAGE} if interaction.source_message_id else set()),
        }[interaction.type]
        if ctype not in allowed:
            raise _form_error(
                "type", "INTERACTION_CALLBACK_TYPE_INVALID", f"Callback type {ctype} is not valid here"
            )

        message: StoredMessage | None = None
        if ctype in (_CB_CHANNEL_MESSAGE, _CB_DEFERRED_CHANNEL_MESSAGE):
            message = self._interaction_message_base(interaction, followup=False)
            if ctype == _CB_DEFERRED_CHANNEL_MESSAGE:
                # "Thinking…": an empty message in LOADING state, completed by the first edit/followup.
                message.flags = MessageFlag.LOADING | (int(data.get("flags") or 0) & MessageFlag.EPHEMERAL)
            else:
                ephemeral = int(data.get("flags") or 0) & MessageFlag.EPHEMERAL
                message.flags = ephemeral
                self._apply_message_body(
                    message, data, call.record.files, creating=True, allowed_flags=_INTERACTION_FLAGS
                )
            interaction.original_message_id = message.id
        elif ctype in (_CB_DEFERRED_UPDATE_MESSAGE, _CB_UPDATE_MESSAGE):
            message = self.messages[interaction.source_message_id]  # type: ignore[index]
            if message.deleted:
                raise _unknown("Message", 10008)
            interaction.original_message_id = message.id
        elif ctype == _CB_AUTOCOMPLETE_RESULT:
            choices = list(data.get("choices") or [])
            if len(choices) > 25:
                raise _form_error("data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            for i, choice in enumerate(choices):
                if not 1 <= len(str(choice.get("name", ""))) <= 100:
                    raise _form_error(
                        f"data.choices.{i}.name",
                        "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 100 in length.",
                    )
            interaction.choices = choices
        elif ctype == _CB_MODAL:
            if not data.get("custom_id") or not data.get("title") or not data.get("components"):
                raise _form_error(
                    "data", "BASE_TYPE_REQUIRED", "custom_id, title and components are required"
                )
            interaction.modal = {**data, "components": self._number_components(list(data["components"]))}

        if ctype == _CB_UPDATE_MESSAGE:
            assert message is not None  # edit first: an invalid body must not acknowledge the interaction
            await self._edit_message(message, _Call(call.request, _with_json(call.record, data)))
        interaction.callback_type = ctype
        if ctype in (_CB_CHANNEL_MESSAGE, _CB_DEFERRED_CHANNEL_MESSAGE):
            assert message is not None
            await self._store_new_message(message)
        await self._notify()

        if call.record.query.get("with_response") not in ("1", "true", "True"):
            return self._json(204, None)
        # InteractionCallbackResponse: discord.py 2.5+ always asks for it and reads
        # interaction.response_message_id to bind views to the message.
        result: dict[str, Any] = {"interaction": {"id": str(interaction.id), "type": interaction.type}}
        if message is not None:
            result["interaction"].update(
                response_message_id=str(message.id),
                response_message_loading=message.loading,
                response_message_ephemeral=message.ephemeral,
            )
        resource: dict[str, Any] = {"type": ctype}
        if message is not None and ctype in (_CB_CHANNEL_MESSAGE, _CB_UPDATE_MESSAGE):
            resource["message"] = message.to_payload()
        result["resource"] = resource
        return self._json(200, result)

    def _webhook_target(self, call: _Call, interaction: _Interaction) -> StoredMessage:
        if call.record.route == ROUTE_ORIGINAL:
            mid = interaction.original_message_id
        else:
            mid = int(call.params["message_id"])
            if mid != interaction.original_message_id and mid not in interaction.followup_ids:
                mid = None
        msg = self.messages.get(mid) if mid is not None else None
        if msg is None or msg.deleted:
            raise _unknown("Message", 10008)
        return msg

    async def _get_webhook_message(self, call: _Call) -> web.StreamResponse:
        interaction = self._interaction_for_webhook(call)
        return self._json(200, self._webhook_target(call, interaction).to_payload())

    async def _edit_webhook_message(self, call: _Call) -> web.StreamResponse:
        interaction = self._interaction_for_webhook(call)
        msg = self._webhook_target(call, interaction)
        headers = self._check_rate_limit(self._webhook_limiter, f"{interaction.token}:webhook")
        await self._edit_message(msg, call)
        return self._json(200, msg.to_payload(), headers)

    async def _delete_webhook_message(self, call: _Call) -> web.StreamResponse:
        interaction = self._interaction_for_webhook(call)
        await self._remove_message(self._webhook_target(call, interaction))
        return self._json(204, None)

    async def _execute_webhook(self, call: _Call) -> web.StreamResponse:
        """Followup message. After a "thinking" defer the first followup completes the loading
        @original instead of creating a new message (and keeps the defer's ephemerality)."""
        interaction = self._interaction_for_webhook(call)
        if interaction.callback_type not in (
            _CB_CHANNEL_MESSAGE,
            _CB_DEFERRED_CHANNEL_MESSAGE,
            _CB_DEFERRED_UPDATE_MESSAGE,
            _CB_UPDATE_MESSAGE,
        ):
            raise _unknown("Webhook", 10015)
        headers = self._check_rate_limit(self._webhook_limiter, f"{interaction.token}:webhook")
        original = self.messages.get(interaction.original_message_id or 0)
        if (
            interaction.callback_type == _CB_DEFERRED_CHANNEL_MESSAGE
            and original is not None
            and original.loading
            and not original.deleted
        ):
            await self._edit_message(original, call)
            msg = original
        else:
            msg = self._interaction_message_base(interaction, followup=True)
            msg.flags = int(call.body.get("flags") or 0) & MessageFlag.EPHEMERAL
            self._apply_message_body(
                msg, call.body, call.record.files, creating=True, allowed_flags=_INTERACTION_FLAGS
            )
            interaction.followup_ids.append(msg.id)
            await self._store_new_message(msg)
        if call.record.query.get("wait") in ("1", "true", "True"):
            return self._json(200, msg.to_payload(), headers)
        return self._json(204, None, headers)

    # ----------------------------------------------------------------------------- interactions: user side

    def _resolve_user(self, user: int | Mapping[str, Any] | None) -> dict[str, Any]:
        if user is None:
            return self.default_user
        if isinstance(user, Mapping):
            user = int((user.get("user") or user)["id"])
        if user not in self.users:
            raise KeyError(f"FakeDiscord has no user {user}; add_user()/add_member() first")
        return self.users[user]

    def _interaction_channel(self, channel_id: int, user_id: int) -> dict[str, Any]:
        channel = dict(self.channels[channel_id])
        channel["permissions"] = str(self.permissions_in(channel_id, user_id))
        return channel

    def _dm_channel_for(self, user_id: int) -> int:
        cid = self._dm_channels.get(user_id)
        if cid is None:
            cid = self.snowflake()
            self._dm_channels[user_id] = cid
            self.channels[cid] = {
                "id": str(cid),
                "type": 1,
                "last_message_id": None,
                "flags": 0,
                "recipients": [self.users[user_id]],
            }
        return cid

    async def _create_interaction(
        self,
        itype: int,
        data: dict[str, Any],
        *,
        user: dict[str, Any],
        guild_id: int | None,
        channel_id: int,
        locale: str,
        name: str = "",
        message: StoredMessage | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> InteractionHandle:
        if not self._sessions:
            raise RuntimeError("FakeDiscord: no gateway session to deliver the interaction to")
        iid = self.snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)  # shaped like Discord's base64 tokens
        uid = int(user["id"])
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "data": data,
            "channel_id": str(channel_id),
            "channel": self._interaction_channel(channel_id, uid),
            "token": token,
            "version": 1,
            "app_permissions": str(self.permissions_in(channel_id, self.application_id)),
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            # Discord sends this (discord.py 2.7 requires it: Interaction.filesize_limit).
            "attachment_size_limit": self.attachment_size_limit,
        }
        if guild_id is not None:
            guild = self.guilds[guild_id]
            member = self.member(uid, guild_id)
            if member is None:
                raise KeyError(f"user {uid} is not a member of guild {guild_id}; add_member() first")
            perms = self._member_permissions.get((guild_id, uid), self.permissions_in(channel_id, uid))
            payload.update(
                guild_id=str(guild_id),
                guild={
                    "id": str(guild_id),
                    "locale": guild["preferred_locale"],
                    "features": guild["features"],
                },
                guild_locale=guild["preferred_locale"],
                member={**member, "permissions": str(perms)},
                authorizing_integration_owners={"0": str(guild_id)},
                context=0,
            )
        else:
            payload.update(user=user, authorizing_integration_owners={"0": str(guild_id or 0)}, context=1)
        if message is not None:
            payload["message"] = message.to_payload()
        payload.update(extra or {})
        interaction = _Interaction(
            id=iid,
            token=token,
            type=itype,
            payload=payload,
            created_at=self.clock(),
            guild_id=guild_id,
            channel_id=channel_id,
            user=user,
            name=name,
            source_message_id=message.id if message is not None else None,
        )
        self._interactions[iid] = interaction
        self._interactions_by_token[token] = interaction
        await self.dispatch("INTERACTION_CREATE", payload)
        return InteractionHandle(self, iid, token, itype, payload)

    def _scope(
        self, user: dict[str, Any], guild_id: int | None, channel_id: int | None, dm: bool
    ) -> tuple[int | None, int]:
        if dm:
            return None, channel_id or self._dm_channel_for(int(user["id"]))
        if channel_id is not None:
            channel = self.channels[channel_id]
            gid = channel.get("guild_id")
            return (int(gid) if gid is not None else None), channel_id
        guild = self._guild(guild_id)
        return int(guild["id"]), int(guild["system_channel_id"])

    def _find_command(self, name: str, guild_id: int | None, ctype: int) -> dict[str, Any]:
        command = (
            self.get_command(name, guild_id, type=ctype) if guild_id is not None else None
        ) or self.get_command(name, None, type=ctype)
        if command is None:
            raise LookupError(
                f"command {name!r} (type {ctype}) is not registered — did the bot sync its tree?"
            )
        return command

    def _option_payload(
        self,
        definition: Mapping[str, Any],
        value: Any,
        resolved: dict[str, dict[str, Any]],
        guild_id: int | None,
        *,
        focused: bool,
    ) -> dict[str, Any]:
        otype = definition["type"]
        name = definition["name"]
        option: dict[str, Any] = {"type": otype, "name": name}
        if focused:
            option.update(value=str(value), focused=True)  # the partial text the user typed
            return option
        if otype in (3, 4, 10, 5):
            if otype == 4 and (isinstance(value, bool) or int(value) != value):
                raise ValueError(f"option {name!r} expects an integer, got {value!r}")
            value = {3: str, 4: int, 10: float, 5: bool}[otype](value)
            choices = definition.get("choices")
            if choices and value not in [c["value"] for c in choices]:
                raise ValueError(f"option {name!r}: {value!r} is not one of its choices")
            lo, hi = definition.get("min_value"), definition.get("max_value")
            if otype in (4, 10) and ((lo is not None and value < lo) or (hi is not None and value > hi)):
                raise ValueError(f"option {name!r}: {value!r} is outside [{lo}, {hi}]")
            lo, hi = definition.get("min_length"), definition.get("max_length")
            if otype == 3 and ((lo is not None and len(value) < lo) or (hi is not None and len(value) > hi)):
                raise ValueError(f"option {name!r}: length of {value!r} is outside [{lo}, {hi}]")
            option["value"] = value
            return option
        snowflake = int((value.get("user") or value)["id"]) if isinstance(value, Mapping) else int(value)
        option["value"] = str(snowflake)
        if otype == 9:  # MENTIONABLE: a user or a role
            otype = 6 if snowflake in self.users else 8
        if otype == 6:
            user = self.users[snowflake]
            resolved.setdefault("users", {})[str(snowflake)] = user
            member = self.member(snowflake, guild_id) if guild_id is not None else None
            if member is not None:
                resolved.setdefault("members", {})[str(snowflake)] = {
                    **{k: v for k, v in member.items() if k != "user"},
                    "permissions": str(self._base_permissions(self.guilds[guild_id], snowflake)),  # type: ignore[index]
                }
        elif otype == 7:
            channel = self.channels[snowflake]
            types = definition.get("channel_types")
            if types and channel["type"] not in types:
                raise ValueError(f"option {name!r}: channel type {channel['type']} not in {types}")
            resolved.setdefault("channels", {})[str(snowflake)] = {
                k: channel[k] for k in ("id", "name", "type", "parent_id", "guild_id") if k in channel
            } | {"permissions": str(self.permissions_in(snowflake, self.application_id))}
        elif otype == 8:
            guild = self._guild(guild_id)
            role = next((r for r in guild["roles"] if r["id"] == str(snowflake)), None)
            if role is None:
                raise KeyError(f"no role {snowflake} in guild {guild['id']}")
            resolved.setdefault("roles", {})[str(snowflake)] = role
        elif otype == 11:
            if isinstance(value, Mapping):
                attachment = dict(value)
            else:
                attachment = self.attachments[snowflake].to_payload()
            resolved.setdefault("attachments", {})[str(snowflake)] = attachment
        return option

    def _build_options(
        self,
        definitions: Sequence[Mapping[str, Any]],
        path: Sequence[str],
        values: Mapping[str, Any],
        resolved: dict[str, dict[str, Any]],
        guild_id: int | None,
        focused: str | None,
    ) -> list[dict[str, Any]]:
        by_name = {d["name"]: d for d in definitions}
        if path:
            sub = by_name.get(path[0])
            if sub is None or sub["type"] not in (1, 2):
                raise LookupError(f"no subcommand or group {path[0]!r}; have {sorted(by_name)}")
            inner = self._build_options(
                sub.get("options") or [], path[1:], values, resolved, guild_id, focused
            )
            return [{"type": sub["type"], "name": sub["name"], "options": inner}]
        if any(d["type"] in (1, 2) for d in definitions):
            raise LookupError(f"a subcommand is required; choose from {sorted(by_name)}")
        options = []
        for key, value in values.items():
            if key not in by_name:
                raise KeyError(f"unknown option {key!r}; command has {sorted(by_name)}")
            options.append(
                self._option_payload(by_name[key], value, resolved, guild_id, focused=key == focused)
            )
        if focused is None:
            missing = [d["name"] for d in definitions if d.get("required") and d["name"] not in values]
            if missing:
                raise ValueError(f"missing required options {missing}")
        return options

    async def _command_interaction(
        self,
        itype: int,
        name: str,
        options: Mapping[str, Any] | None,
        *,
        user: int | Mapping[str, Any] | None,
        guild_id: int | None,
        channel_id: int | None,
        dm: bool,
        locale: str,
        focused: str | None,
        ignore_default_permissions: bool,
    ) -> InteractionHandle:
        user_payload = self._resolve_user(user)
        gid, cid = self._scope(user_payload, guild_id, channel_id, dm)
        top, *path = name.split()
        command = self._find_command(top, gid, 1)
        required = command.get("default_member_permissions")
        if gid is not None and required is not None and not ignore_default_permissions:
            uid = int(user_payload["id"])
            have = self._member_permissions.get((gid, uid), self._base_permissions(self.guilds[gid], uid))
            if not have & Permission.ADMINISTRATOR and have & int(required) != int(required):
                raise PermissionError(
                    f"user lacks default_member_permissions={required} for /{top}; Discord hides it"
                )
        resolved: dict[str, dict[str, Any]] = {}
        built = self._build_options(
            command.get("options") or [], path, dict(options or {}), resolved, gid, focused
        )
        data: dict[str, Any] = {"id": command["id"], "name": command["name"], "type": 1}
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return await self._create_interaction(
            itype, data, user=user_payload, guild_id=gid, channel_id=cid, locale=locale, name=name
        )

    async def invoke_command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: int | Mapping[str, Any] | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        attachments: Mapping[str, Mapping[str, Any] | tuple[bytes, str, str]] | None = None,
        dm: bool = False,
        locale: str = "en-US",
        ignore_default_permissions: bool = False,
    ) -> InteractionHandle:
        """A user runs ``/name`` (``"group sub"`` for subcommands): dispatches INTERACTION_CREATE
        type 2 built from the *registered* command (so option types come from what the bot
        synced). Values: str/int/float/bool; user/member/role/channel ids or payload dicts;
        attachment payloads from ``add_attachment`` (or ``attachments={"opt": (bytes, filename,
        content_type)}``). Defaults: ``fake.default_user`` in the default guild's #general."""
        values = dict(options or {})
        for key, att in (attachments or {}).items():
            values[key] = self.add_attachment(*att) if isinstance(att, tuple) else att
        return await self._command_interaction(
            _ITYPE_APPLICATION_COMMAND,
            name,
            values,
            user=user,
            guild_id=guild_id,
            channel_id=channel_id,
            dm=dm,
            locale=locale,
            focused=None,
            ignore_default_permissions=ignore_default_permissions,
        )

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        focused: str | None = None,
        user: int | Mapping[str, Any] | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        dm: bool = False,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Type 4: the user is typing into option ``focused`` (default: the last in ``options``).
        ``await handle.choices()`` returns what the bot answered."""
        focus = focused if focused is not None else list(options)[-1]
        return await self._command_interaction(
            _ITYPE_AUTOCOMPLETE,
            name,
            options,
            user=user,
            guild_id=guild_id,
            channel_id=channel_id,
            dm=dm,
            locale=locale,
            focused=focus,
            ignore_default_permissions=True,
        )

    @staticmethod
    def _walk_components(components: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for c in components:
            yield c
            yield from FakeDiscord._walk_components(c.get("components") or [])
            for key in ("accessory", "component"):
                if isinstance(c.get(key), Mapping):
                    yield from FakeDiscord._walk_components([c[key]])

    async def invoke_component(
        self,
        message: StoredMessage | int,
        custom_id: str,
        *,
        user: int | Mapping[str, Any] | None = None,
        component_type: int | None = None,
        values: Sequence[str | int] | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """A user clicks a button / picks from a select on a stored message (type 3)."""
        msg = self.messages[message] if isinstance(message, int) else message
        if msg.deleted:
            raise LookupError(f"message {msg.id} was deleted")
        component = next(
            (c for c in self._walk_components(msg.components) if c.get("custom_id") == custom_id), None
        )
        if component is None:
            raise LookupError(f"message {msg.id} has no component with custom_id {custom_id!r}")
        if component.get("disabled"):
            raise PermissionError(f"component {custom_id!r} is disabled; Discord would not send the click")
        ctype = component_type if component_type is not None else int(component["type"])
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": ctype, "id": component.get("id")}
        if ctype in (3, 5, 6, 7, 8):
            picked = [str(v) for v in values or []]
            data["values"] = picked
            resolved: dict[str, dict[str, Any]] = {}
            kind = {5: 6, 6: 8, 7: 9, 8: 7}.get(ctype)
            if kind is not None:
                for v in picked:
                    self._option_payload(
                        {"type": kind, "name": custom_id}, v, resolved, msg.guild_id, focused=False
                    )
                data["resolved"] = resolved
        user_payload = self._resolve_user(user)
        return await self._create_interaction(
            _ITYPE_COMPONENT,
            data,
            user=user_payload,
            guild_id=msg.guild_id,
            channel_id=msg.channel_id,
            locale=locale,
            message=msg,
        )

    def _fill_modal(
        self, components: Sequence[Mapping[str, Any]], fields: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Answer a modal the way Discord does: the same layout with values filled in."""
        out = []

        def leaf(c: Mapping[str, Any], label: str | None) -> dict[str, Any]:
            ctype, cid = c["type"], c.get("custom_id")
            result: dict[str, Any] = {"type": ctype, "id": c.get("id")}
            if cid is None:
                return result
            result["custom_id"] = cid
            key = next((k for k in (cid, label, c.get("label")) if k is not None and k in fields), None)
            value = fields.pop(key) if key is not None else None
            if ctype == 4:
                if value is None and c.get("required", True):
                    raise ValueError(f"modal text input {label or c.get('label') or cid!r} is required")
                result["value"] = "" if value is None else str(value)
            else:
                result["values"] = [str(v) for v in (value or [])]
            return result

        for c in components:
            if c["type"] == 1:
                out.append(
                    {
                        "type": 1,
                        "id": c.get("id"),
                        "components": [leaf(x, x.get("label")) for x in c["components"]],
                    }
                )
            elif c["type"] == 18:
                out.append({"type": 18, "id": c.get("id"), "component": leaf(c["component"], c.get("label"))})
            else:
                out.append({"type": c["type"], "id": c.get("id")})
        return out

    async def submit_modal(
        self,
        custom_id: str,
        fields: Mapping[str, str | Sequence[str]],
        *,
        user: int | Mapping[str, Any] | None = None,
        message: StoredMessage | int | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """A user submits the modal the bot opened with ``custom_id`` (type 5). ``fields`` keys are
        the inputs' custom_ids or labels. User/channel/message default to the opening interaction's."""
        opener = next(
            (
                i
                for i in reversed(self._interactions.values())
                if i.modal and i.modal["custom_id"] == custom_id
            ),
            None,
        )
        remaining = dict(fields)
        if opener is not None:
            components = self._fill_modal(opener.modal["components"], remaining)  # type: ignore[index]
            if remaining:
                raise KeyError(f"modal {custom_id!r} has no inputs {sorted(remaining)}")
            user_payload = self._resolve_user(user) if user is not None else opener.user
            gid, cid = opener.guild_id, opener.channel_id
            if message is None and opener.source_message_id is not None:
                message = opener.source_message_id
        else:
            components = [
                {"type": 1, "components": [{"type": 4, "custom_id": k, "value": str(v)}]}
                for k, v in remaining.items()
            ]
            user_payload = self._resolve_user(user)
            gid, cid = self._scope(user_payload, None, None, dm=False)
        msg = self.messages[message] if isinstance(message, int) else message
        if msg is not None:
            gid, cid = msg.guild_id, msg.channel_id
        return await self._create_interaction(
            _ITYPE_MODAL_SUBMIT,
            {"custom_id": custom_id, "components": components},
            user=user_payload,
            guild_id=gid,
            channel_id=cid,
            locale=locale,
            message=msg,
        )


_CHANNEL_FLAGS: Final = (
    MessageFlag.SUPPRESS_EMBEDS
    | MessageFlag.SUPPRESS_NOTIFICATIONS
    | MessageFlag.IS_VOICE_MESSAGE
    | MessageFlag.IS_COMPONENTS_V2
)
_INTERACTION_FLAGS: Final = _CHANNEL_FLAGS | MessageFlag.EPHEMERAL


def _embed_chars(embed: Mapping[str, Any]) -> int:
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "") + len(
        (embed.get("author") or {}).get("name") or ""
    )
    for f in embed.get("fields") or []:
        total += len(f.get("name") or "") + len(f.get("value") or "")
    return total


def _with_json(record: RecordedRequest, body: Any) -> RecordedRequest:
    """A view of ``record`` with another body (UPDATE_MESSAGE edits with the callback's ``data``)."""
    clone = RecordedRequest(**{**record.__dict__, "json": body})
    return clone


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
