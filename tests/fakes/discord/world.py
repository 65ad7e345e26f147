"""The fake Discord's world: guilds, channels, roles, members, users, messages and interactions,
snowflake ids, and the waits tests use to observe changes to that state."""

from __future__ import annotations

import asyncio
import datetime
import json
import mimetypes
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote

if TYPE_CHECKING:
    from tests.fakes.discord.rest import Fault

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
    stored_size: int | None = None  # the size when the fake was told not to keep file contents

    @property
    def size(self) -> int:
        return len(self.data) if self.stored_size is None else self.stored_size


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
    age: float = (
        0.0  # created_at is this much before it reached the bot (FakeDiscord.interaction_age_seconds)
    )


class World:
    """State and queries; the attributes are set up by ``FakeDiscord.__init__``."""

    # ----------------------------------------------------------------------------- ids & waits

    def snowflake(self, *, age: float = 0.0) -> int:
        """A realistic 64-bit snowflake: wall-clock ms since the Discord epoch + an increment.
        ``age``: the id of something created that many seconds ago (it encodes that time)."""
        if age > 0:
            return self.snowflake() - (int(age * 1000) << 22)  # unique: a fresh id, moved back in time
        now = int(time.time() * 1000)
        if now > self._last_ms:
            self._last_ms, self._increment = now, 0
        else:
            self._increment += 1
            if self._increment >= 4096:
                self._last_ms, self._increment = self._last_ms + 1, 0
        return ((self._last_ms - DISCORD_EPOCH_MS) << 22) | self._increment

    def snowflake_after(self, previous: int) -> int:
        """A snowflake one millisecond later than ``previous`` (later ids stay unique and ordered)."""
        self._last_ms, self._increment = (previous >> 22) + DISCORD_EPOCH_MS + 1, 0
        return (self._last_ms - DISCORD_EPOCH_MS) << 22

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

    def add_guild(
        self, name: str, *, owner_id: int | None = None, shard: int | None = None
    ) -> dict[str, Any]:
        """A guild with @everyone, the bot's managed role + member, a category and ``#general``.
        Call before the client connects (or send GUILD_CREATE yourself via ``announce_guild``).
        ``shard``: an id on that shard of ``shard_count`` (``(id >> 22) % shard_count``)."""
        gid = self.snowflake()
        if shard is not None:
            if not 0 <= shard < self.shard_count:
                raise ValueError(f"shard {shard} is not one of the {self.shard_count} shards")
            while (gid >> 22) % self.shard_count != shard:
                gid = self.snowflake_after(gid)
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
