"""The fake Discord's gateway: the websocket discord.py connects to (HELLO, IDENTIFY/READY,
RESUME, heartbeats, dispatches)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import WSMsgType, web

from tests.fakes.discord.world import API_VERSION, Intent, World

if TYPE_CHECKING:
    pass


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


class Gateway(World):
    """The websocket side of ``FakeDiscord``."""

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
        guilds = [g for g in self.guilds.values() if self.shard_for(int(g["id"]), shard_count) == shard_id]
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
            await self._send_dispatch(session, "GUILD_CREATE", self.guild_create_payload(guild, intents))
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

    def guild_create_payload(self, guild: dict[str, Any], intents: int) -> dict[str, Any]:
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

    def shard_for(self, guild_id: int | None, shard_count: int | None = None) -> int:
        """The shard a guild's events go to: ``(guild_id >> 22) % shard_count`` (Discord's rule);
        events outside guilds (DMs) go to shard 0."""
        count = shard_count if shard_count is not None else self.shard_count
        return 0 if guild_id is None else (guild_id >> 22) % count

    def _session_gets(self, session: _GatewaySession, guild_id: int | None) -> bool:
        shard_id, shard_count = session.shard
        return self.shard_for(guild_id, shard_count) == shard_id

    async def dispatch(
        self, event: str, data: Any, *, intent: int | None = None, guild_id: int | None = None
    ) -> int:
        """Send a DISPATCH (op 0) to every session of the shard the event belongs to (its guild's,
        from ``guild_id`` or the payload's ``guild_id``; shard 0 outside guilds). Sessions that are
        momentarily disconnected get it replayed on RESUME. ``intent``: only sessions that
        identified with that intent bit. Returns how many live connections it was sent to."""
        if guild_id is None and isinstance(data, dict) and data.get("guild_id") is not None:
            guild_id = int(data["guild_id"])
        sent = 0
        for session in list(self._sessions.values()):
            if intent is not None and not session.intents & intent:
                continue
            if not self._session_gets(session, guild_id):
                continue
            if session.conn is not None and session.conn.ready:
                sent += 1
            self.dispatched.append((session.shard, event, guild_id))
            await self._send_dispatch(session, event, data)
        return sent

    async def announce_guild(self, guild_id: int) -> None:
        """Send GUILD_CREATE for a guild added after clients connected (the bot "joined" it), to
        the sessions of its shard."""
        guild = self._guild(guild_id)
        for session in list(self._sessions.values()):
            if self._session_gets(session, guild_id):
                await self._send_dispatch(
                    session, "GUILD_CREATE", self.guild_create_payload(guild, session.intents)
                )

    @property
    def connected_shards(self) -> set[tuple[int, int]]:
        """``(shard_id, shard_count)`` of every session with a live, ready connection."""
        return {c.session.shard for c in self._connections if c.ready and c.session is not None}

    async def wait_shards_connected(self, shard_ids: set[int], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until every one of ``shard_ids`` has a ready connection."""
        await self._wait(
            lambda: shard_ids <= {shard for shard, _count in self.connected_shards} or None,
            timeout,
            f"shards {sorted(shard_ids)} to connect",
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
