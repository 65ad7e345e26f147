"""The fake Discord's REST API under ``/api/v10``: routing, auth, fault injection, rate limits and
the handlers for users, commands, guilds, channels, messages and interaction webhooks."""

from __future__ import annotations

import asyncio
import itertools
import json
import mimetypes
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from tests.fakes.discord.world import (
    _CB_AUTOCOMPLETE_RESULT,
    _CB_CHANNEL_MESSAGE,
    _CB_DEFERRED_CHANNEL_MESSAGE,
    _CB_DEFERRED_UPDATE_MESSAGE,
    _CB_MODAL,
    _CB_UPDATE_MESSAGE,
    _ITYPE_APPLICATION_COMMAND,
    _ITYPE_AUTOCOMPLETE,
    _ITYPE_COMPONENT,
    _ITYPE_MODAL_SUBMIT,
    API_VERSION,
    Intent,
    MessageEdit,
    MessageFlag,
    Permission,
    RecordedFile,
    RecordedRequest,
    StoredAttachment,
    StoredMessage,
    World,
    _ApiError,
    _form_error,
    _Interaction,
    _now_iso,
    _unknown,
)

if TYPE_CHECKING:
    pass

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


class RestApi(World):
    """The HTTP side of ``FakeDiscord``."""

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
                            data=bytes(data) if self.keep_file_data else b"",
                            stored_size=None if self.keep_file_data else len(data),
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
        if spec.bot_auth and (limited := self._check_global_limit()) is not None:
            return await self._finish(record, limited)
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
            headers["X-RateLimit-Scope"] = "global" if is_global else "user"
            headers["Via"] = "1.1 google"
            if is_global:
                headers["X-RateLimit-Global"] = "true"
        return headers

    def _check_global_limit(self) -> web.Response | None:
        """Discord's global limit on bot-token requests (interaction-token routes are exempt): a 429
        with ``global: true``, ``X-RateLimit-Global`` and ``X-RateLimit-Scope: global``, or None."""
        if self._global_limiter is None:
            return None
        allowed, _remaining, reset_after = self._global_limiter.hit("global", self.clock())
        if allowed:
            return None
        self.rate_limited_count += 1
        self.rate_limited_by_kind["global"] += 1
        body = {
            "message": "You are being rate limited.",
            "retry_after": round(reset_after, 3),
            "global": True,
        }
        headers = self._rate_limit_headers(reset_after, too_many=True, is_global=True)
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Bucket"):
            del headers[name]  # a global 429 names no route bucket
        return self._json(429, body, headers)

    def _check_rate_limit(self, limiter: _FixedWindowLimiter | None, key: str) -> dict[str, str]:
        """Raise a 429, or return the X-RateLimit-* headers for the success response (discord.py
        uses them to wait pre-emptively, exactly as with Discord)."""
        if limiter is None:
            return {}
        allowed, remaining, reset_after = limiter.hit(key, self.clock())
        bucket = f"fake-{key.rsplit(':', 1)[-1]}"
        if not allowed:
            self.rate_limited_count += 1
            self.rate_limited_by_kind["interaction" if key.endswith(":webhook") else "channel"] += 1
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
        return self._json(
            200, {"url": self.gateway_url, "shards": self.shard_count, "session_start_limit": limit}
        )

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
        if deadline is not None and self.clock() - interaction.created_at - interaction.age > deadline:
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
