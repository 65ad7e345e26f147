"""The local Videos API server: aiohttp routes and middlewares over the job store.

Extension point: ``LocalRenderer(config, middlewares=[...])`` wraps extra aiohttp middlewares
around the API, for tools that observe or alter the traffic (the test suite's request log and
fault injection live in ``tests/fakes/provider.py``; the benchmark counts requests). They run,
outermost first, inside the error conversion and the configured latency and outside the
authentication check and the handlers, so they see every request that reaches the API, before a
bad key is refused. ``await request_body(request)`` gives them the parsed body the handlers will
use. The renderer itself installs none.

Security: with ``config.api_key`` set, every route needs ``Authorization: Bearer <key>``, checked
before the renderer reads a body (a stranger's upload is refused unread). Request bodies live only
as long as their request: nothing here keeps them, and jobs keep only their prompt and parameters.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bot.domain.errors import ConfigError
from bot.localapi import protocol
from bot.localapi.config import LocalRendererConfig
from bot.localapi.jobs import Job, JobStore, expired, resource, state_at
from bot.localapi.protocol import API_PREFIX, POLL_AFTER_HEADER, ApiError, request_body
from bot.localapi.rendering import ASSETS, ClipInfo, probe_clip
from bot.localapi.webhooks import WebhookSender

log = logging.getLogger(__name__)

# Reference images, uploaded clips (edits, extensions, characters) and their multipart framing:
# well above what a 1792x1024 PNG needs, and a 20-second clip at Discord's attachment sizes.
_MAX_REQUEST_BYTES: Final = 32 * 1024 * 1024
# A connection that carried a larger body is closed after its response (see _release_middleware).
_KEEP_ALIVE_BODY_BYTES: Final = 64 * 1024


class LocalRenderer:
    """The local Videos API server; use as ``async with LocalRenderer(config) as renderer``.

    ``port=0`` picks a free port; ``base_url`` then reports the real one. ``jobs`` holds the jobs
    (to look at one without HTTP). ``middlewares``: see the module docstring. A ``host`` other than
    a loopback address needs ``config.api_key``: the API lists every prompt it was sent.
    """

    def __init__(
        self,
        config: LocalRendererConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        middlewares: Sequence[Middleware] = (),
    ) -> None:
        self.config = config or LocalRendererConfig()
        if self.config.api_key is None and not is_loopback(host):
            raise ValueError(unprotected_host_message(host))
        self.jobs = JobStore(self.config, on_rendered=self._job_rendered)
        self.app = create_app(self, middlewares)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._webhooks: WebhookSender | None = None
        # Characters by id, oldest first; only their names are kept, never the uploaded video.
        self.characters: dict[str, dict[str, Any]] = {}

    # ----------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> LocalRenderer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        self.jobs.open()
        if self.config.webhooks_enabled:
            self._webhooks = WebhookSender(self.config)
            self._webhooks.open()
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.jobs.close()
        if self._webhooks is not None:
            await self._webhooks.close()
            self._webhooks = None

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}{API_PREFIX}"

    def _resource_now(self, job: Job) -> dict[str, Any]:
        return resource(job, self.config, self.config.clock())

    async def _job_rendered(self, job: Job) -> None:
        if self._webhooks is not None:
            await self._webhooks.send_outcome(job)

    # ----------------------------------------------------------------------- middlewares

    @web.middleware
    async def _release_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        length = request.content_length
        if request.body_exists and (length is None or length > _KEEP_ALIVE_BODY_BYTES):
            # aiohttp holds a connection's last request, body included, until the next request
            # arrives on it; closing a connection that carried a large body frees it now, so that
            # idle connections cannot pin megabytes each.
            response.force_close()
        return response

    @web.middleware
    async def _error_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return error.response()
        except web.HTTPException as exc:
            if exc.status in (404, 405):
                message = f"Invalid URL ({request.method} {request.path})"
            else:
                message = exc.reason
            return ApiError(exc.status, message).response()
        except Exception:
            log.exception("Local renderer failed on %s %s", request.method, request.path)
            return ApiError(
                500, "The local renderer failed unexpectedly; see its log.", error_type="server_error"
            ).response()

    @web.middleware
    async def _latency_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.config.latency_seconds > 0:
            await asyncio.sleep(self.config.latency_seconds)
        return await handler(request)

    @web.middleware
    async def _body_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Read every body before the handlers, so that an unreadable one (too large) is refused
        # the same way on every endpoint.
        await request_body(request)
        return await handler(request)

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        expected = self.config.api_key
        if expected is None:
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if not secrets.compare_digest(token.strip().encode(), expected.encode()):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
        return await handler(request)

    # ----------------------------------------------------------------------- handlers

    async def _create_video(self, request: web.Request) -> web.Response:
        config = self.config
        fields = await protocol.fields(request, protocol.CREATE_FIELDS)
        prompt = protocol.validated_prompt(fields.get("prompt"))
        model = protocol.validated_model(config, fields.get("model", protocol.DEFAULT_MODEL))
        size = protocol.validated_size(config, model, fields.get("size", protocol.DEFAULT_SIZE))
        seconds = protocol.validated_seconds(config, fields.get("seconds", protocol.DEFAULT_SECONDS))
        reference = None
        if "input_reference" in fields:
            reference = await protocol.validated_reference(fields["input_reference"], size)
        job = await self.jobs.start(
            model=model, prompt=prompt, size=size, seconds=seconds, reference=reference, remixed_from=None
        )
        return self._json(self._resource_now(job), poll_hint=True)

    async def _remix_video(self, request: web.Request) -> web.Response:
        source = self._job(request.match_info["video_id"])
        fields = await protocol.fields(request, protocol.REMIX_FIELDS)
        prompt = protocol.validated_prompt(fields.get("prompt"))
        now = self.config.clock()
        self._check_completed(source, "remixed", now)
        job = await self.jobs.start(
            model=source.model,
            prompt=prompt,
            size=source.size,
            seconds=source.seconds,
            reference=None,
            remixed_from=source.id,
        )
        return self._json(resource(job, self.config, now), poll_hint=True)

    async def _list_videos(self, request: web.Request) -> web.Response:
        limit = protocol.query_limit(request.query.get("limit", "20"))
        order = request.query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise protocol.invalid(
                "order", f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'."
            )
        jobs = self.jobs.all()
        if order == "desc":
            jobs.reverse()
        after = request.query.get("after")
        if after is not None:
            position = next((index for index, job in enumerate(jobs) if job.id == after), None)
            if position is None:
                raise protocol.invalid("after", f"No video found with id '{after}'.")
            jobs = jobs[position + 1 :]
        page = jobs[:limit]
        now = self.config.clock()
        body = {
            "object": "list",
            "data": [resource(job, self.config, now) for job in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(jobs) > len(page),
        }
        return self._json(body, poll_hint=True)

    async def _retrieve_video(self, request: web.Request) -> web.Response:
        return self._json(self._resource_now(self._job(request.match_info["video_id"])), poll_hint=True)

    async def _delete_video(self, request: web.Request) -> web.Response:
        job = self._job(request.match_info["video_id"])
        status = state_at(job, self.config, self.config.clock()).status
        if status not in ("completed", "failed"):
            raise ApiError(
                400,
                f"Video '{job.id}' is {status}; only completed or failed videos can be deleted.",
                code="invalid_video_status",
            )
        await self.jobs.delete(job)
        return self._json({"id": job.id, "object": "video.deleted", "deleted": True})

    async def _download_content(self, request: web.Request) -> web.FileResponse:
        job = self._job(request.match_info["video_id"])
        variant = request.query.get("variant", "video")
        asset = ASSETS.get(variant)
        if asset is None:
            raise protocol.invalid(
                "variant", f"Invalid value: '{variant}'. Supported values are: {protocol.quoted(ASSETS)}."
            )
        now = self.config.clock()
        state = state_at(job, self.config, now)
        if state.status == "failed":
            raise ApiError(
                409, f"Video '{job.id}' failed; it has no content to download.", code="video_failed"
            )
        if state.status != "completed":
            raise ApiError(
                409,
                f"Video '{job.id}' is {state.status}; its content can be downloaded once it has completed.",
                code="video_not_ready",
            )
        if expired(job, state, self.config, now):
            raise ApiError(404, f"The assets of video '{job.id}' have expired.", code="video_expired")
        return web.FileResponse(job.directory / asset.filename, headers={"Content-Type": asset.content_type})

    async def _extend_video(self, request: web.Request) -> web.Response:
        fields = await protocol.fields(request, protocol.EXTEND_FIELDS)
        video = protocol.validated_video(fields.get("video"))
        prompt = protocol.validated_prompt(fields.get("prompt"))
        seconds = protocol.validated_seconds(self.config, fields.get("seconds"), extension=True)
        source = await self._source(video, "extended")
        total = source.seconds + int(seconds)
        if total > self.config.max_video_seconds:
            raise protocol.invalid(
                "seconds",
                f"The extension would make a {total}-second video; the local renderer makes videos of "
                f"at most {self.config.max_video_seconds} seconds (max_video_seconds).",
            )
        job = await self.jobs.start(
            model=source.model,
            prompt=prompt,
            size=source.size,
            seconds=str(total),
            reference=None,
            remixed_from=None,
            operation="extend",
            source=source.data,
            source_seconds=source.seconds,
        )
        return self._json(self._resource_now(job), poll_hint=True)

    async def _edit_video(self, request: web.Request) -> web.Response:
        fields = await protocol.fields(request, protocol.EDIT_FIELDS)
        video = protocol.validated_video(fields.get("video"))
        prompt = protocol.validated_prompt(fields.get("prompt"))
        source = await self._source(video, "edited")
        job = await self.jobs.start(
            model=source.model,
            prompt=prompt,
            size=source.size,
            seconds=str(source.seconds),
            reference=None,
            remixed_from=None,
            operation="edit",
            source=source.data,
        )
        return self._json(self._resource_now(job), poll_hint=True)

    async def _create_character(self, request: web.Request) -> web.Response:
        fields = await protocol.fields(request, protocol.CHARACTER_FIELDS)
        name = protocol.validated_name(fields.get("name"))
        await self._uploaded_clip(protocol.validated_upload(fields.get("video"), "video"))
        character_id = f"char_{uuid.uuid4().hex}"
        character = {"id": character_id, "name": name, "created_at": int(self.config.clock())}
        self.characters[character_id] = character
        while len(self.characters) > self.config.max_characters:
            del self.characters[next(iter(self.characters))]
        return self._json(character)

    async def _get_character(self, request: web.Request) -> web.Response:
        character_id = request.match_info["character_id"]
        character = self.characters.get(character_id)
        if character is None:
            raise ApiError(404, f"Character with id '{character_id}' not found.")
        return self._json(character)

    def _check_completed(self, source: Job, done: str, now: float) -> None:
        """Refuse (400) a source that is not completed or whose files have expired."""
        state = state_at(source, self.config, now)
        if state.status != "completed":
            raise ApiError(
                400,
                f"Video '{source.id}' is {state.status}; only completed videos can be {done}.",
                code="invalid_video_status",
            )
        if expired(source, state, self.config, now):
            raise ApiError(
                400, f"The assets of video '{source.id}' have expired; it can no longer be {done}."
            )

    async def _source(self, video: str | bytes, done: str) -> _Source:
        """What an extension or edit starts from: a completed video (by id) or an uploaded clip."""
        if isinstance(video, str):
            job = self._job(video)
            self._check_completed(job, done, self.config.clock())
            return _Source(job.model, job.size, int(job.seconds), job.directory / ASSETS["video"].filename)
        clip = await self._uploaded_clip(video)
        model = (
            protocol.DEFAULT_MODEL
            if protocol.DEFAULT_MODEL in self.config.models
            else next(iter(self.config.models))
        )
        size = protocol.nearest_size(self.config.models[model], clip.width, clip.height)
        return _Source(model, size, max(1, round(clip.duration)), video)

    async def _uploaded_clip(self, data: bytes) -> ClipInfo:
        """Check an uploaded video by its content (a decodable video, its picture and length)."""
        config = self.config
        try:
            clip = await asyncio.to_thread(probe_clip, io.BytesIO(data), max_pixels=config.max_clip_pixels)
        except ValueError as exc:
            raise protocol.invalid("video", f"The uploaded video cannot be used: {exc}.") from None
        if clip.duration > config.max_clip_seconds + 0.05:
            raise protocol.invalid(
                "video",
                f"The uploaded video is {clip.duration:.1f} seconds long; the local renderer accepts "
                f"videos of at most {config.max_clip_seconds:g} seconds.",
            )
        return clip

    def _job(self, video_id: str) -> Job:
        job = self.jobs.get(video_id)
        if job is None:
            raise protocol.not_found(video_id)
        return job

    def _json(self, body: Mapping[str, Any], *, poll_hint: bool = False) -> web.Response:
        headers = {}
        if poll_hint and self.config.poll_after_ms is not None:
            headers[POLL_AFTER_HEADER] = str(self.config.poll_after_ms)
        return web.json_response(body, headers=headers)


@dataclass(frozen=True)
class _Source:
    model: str
    size: str
    seconds: int
    data: Path | bytes
    """The source job's video file, or the uploaded clip's bytes."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (``localhost`` or a loopback address)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        # A name that resolves elsewhere, or "" (every interface).
        return False


def unprotected_host_message(host: str) -> str:
    return (
        f"refusing to serve the local renderer on {host or 'every interface'!r} without an API key: "
        "anyone who can reach it could read every prompt. Set LOCAL_API_KEY (or pass --api-key), "
        "or listen on 127.0.0.1."
    )


def create_app(renderer: LocalRenderer, middlewares: Sequence[Middleware] = ()) -> web.Application:
    """The aiohttp application serving ``renderer``'s Videos API under ``/v1``."""
    app = web.Application(
        client_max_size=_MAX_REQUEST_BYTES,
        # Outermost first: errors are converted last (only the body release comes after), and
        # latency delays every response, even one an extension answers itself.
        middlewares=[
            renderer._release_middleware,
            renderer._error_middleware,
            renderer._latency_middleware,
            *middlewares,
            renderer._auth_middleware,
            renderer._body_middleware,
        ],
    )
    videos = f"{API_PREFIX}/videos"
    app.add_routes(
        [
            web.post(videos, renderer._create_video),
            web.get(videos, renderer._list_videos),
            web.get(f"{videos}/{{video_id}}", renderer._retrieve_video),
            web.delete(f"{videos}/{{video_id}}", renderer._delete_video),
            web.get(f"{videos}/{{video_id}}/content", renderer._download_content),
            web.post(f"{videos}/{{video_id}}/remix", renderer._remix_video),
            web.post(f"{videos}/extensions", renderer._extend_video),
            web.post(f"{videos}/edits", renderer._edit_video),
            web.post(f"{videos}/characters", renderer._create_character),
            web.get(f"{videos}/characters/{{character_id}}", renderer._get_character),
        ]
    )
    return app


async def serve_forever(config: LocalRendererConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the local renderer until cancelled (the ``videobot local-api`` command)."""
    renderer = LocalRenderer(config, host=host, port=port)
    try:
        await renderer.start()
    except OSError as exc:
        raise ConfigError(
            f"local-api --port {port}: cannot listen on {host} ({exc.strerror or exc}); pick another --port"
        ) from None
    try:
        log.info("Local Videos API renderer listening on %s", renderer.base_url)
        if config.api_key is None:
            log.warning(
                "The local renderer has no API key: any program on this machine can read its prompts. "
                "Set LOCAL_API_KEY to require one."
            )
        await asyncio.Event().wait()
    finally:
        await renderer.close()
