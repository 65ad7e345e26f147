"""Local Videos API renderer: an HTTP server that speaks the OpenAI Videos API and renders real MP4s.

It serves two purposes. As a product feature it lets people try the bot without a video provider
(``videobot local-api``). In tests it is the provider: its behaviour is configurable (timings,
models, sizes, moderation, asset expiry, webhooks) and controllable (injected faults, a log of
every request received, an injectable clock).

The job lifecycle is derived from the clock on every read rather than driven by timers: a job is
``queued`` for ``queue_seconds``, then ``in_progress`` with rising progress, and ``completed`` once
``generation_seconds`` have passed *and* its video has actually been rendered. Rendering starts in
a worker thread when the job is created, at most two at a time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import io
import json
import logging
import math
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from aiohttp.typedefs import Handler
from multidict import CIMultiDictProxy, MultiDictProxy
from PIL import Image
from standardwebhooks import Webhook

from bot.adapters.media import ImageError, make_spritesheet, make_thumbnail, render_video, sniff_image
from bot.domain.errors import ConfigError

log = logging.getLogger(__name__)

API_PREFIX: Final = "/v1"
POLL_AFTER_HEADER: Final = "openai-poll-after-ms"
MAX_PROMPT_CHARS: Final = 32_000

_DEFAULT_MODEL: Final = "sora-2"
_DEFAULT_SIZE: Final = "720x1280"
_DEFAULT_SECONDS: Final = "4"
_CREATE_FIELDS: Final = frozenset({"model", "prompt", "input_reference", "seconds", "size"})
_REMIX_FIELDS: Final = frozenset({"prompt"})
# Reference images and their multipart framing; well above what a 1792x1024 PNG needs.
_MAX_REQUEST_BYTES: Final = 32 * 1024 * 1024
_MAX_CONCURRENT_RENDERS: Final = 2
_MAX_RECORDED_REQUESTS: Final = 10_000
# How often a pending webhook re-reads the clock; small so that tests driving an injected clock
# see their event promptly.
_WEBHOOK_CLOCK_POLL_SECONDS: Final = 0.05
_WEBHOOK_TIMEOUT: Final = ClientTimeout(total=10)

VideoStatus = Literal["queued", "in_progress", "completed", "failed"]


@dataclass(frozen=True)
class _Asset:
    filename: str
    content_type: str


_ASSETS: Final[Mapping[str, _Asset]] = {
    "video": _Asset("video.mp4", "video/mp4"),
    "thumbnail": _Asset("thumbnail.webp", "image/webp"),
    "spritesheet": _Asset("spritesheet.jpg", "image/jpeg"),
}


def _default_models() -> dict[str, list[str]]:
    standard = ["720x1280", "1280x720"]
    return {"sora-2": standard, "sora-2-pro": [*standard, "1024x1792", "1792x1024"]}


@dataclass
class LocalRendererConfig:
    """How the local renderer behaves. Timings are in seconds of ``clock`` time."""

    generation_seconds: float = 6.0
    """From create to ``completed`` (provided the render has finished by then)."""
    queue_seconds: float = 1.0
    """Time spent ``queued`` before ``in_progress``."""
    fps: int = 24
    api_key: str | None = None
    """When set, every request needs ``Authorization: Bearer <api_key>``."""
    models: dict[str, list[str]] = field(default_factory=_default_models)
    """Model name → sizes it accepts."""
    allowed_seconds: tuple[str, ...] = ("4", "8", "12")
    blocked_words: tuple[str, ...] = ("forbidden",)
    """A prompt containing one of these (case-insensitive) fails with ``moderation_blocked``."""
    poll_after_ms: int | None = 1000
    """Sent as ``openai-poll-after-ms`` on create, remix, retrieve and list responses."""
    asset_ttl_seconds: int = 3600
    """Downloads expire this long after completion."""
    data_dir: Path | None = None
    """Where rendered files go; ``None`` means a temporary directory removed on close."""
    latency_seconds: float = 0.0
    """Added before every response."""
    noise: bool = False
    target_bitrate: int | None = None
    """Passed to ``render_video``: together they produce large files on purpose."""
    clock: Callable[[], float] = time.time
    webhook_url: str | None = None
    webhook_secret: str | None = None
    """With ``webhook_url``, sign and send ``video.completed`` / ``video.failed`` events there."""


# --------------------------------------------------------------------------- request log


@dataclass(frozen=True)
class RecordedFile:
    """A file part of a multipart request, without its content."""

    filename: str | None
    content_type: str
    size: int


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it, before any fault or auth check."""

    method: str
    path: str
    """Full path including ``/v1``."""
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    json_body: Any
    """The parsed JSON document for ``application/json`` bodies, else ``None``."""
    form: dict[str, str | RecordedFile] | None
    """Multipart fields (files summarised) for ``multipart/form-data`` bodies, else ``None``."""
    received_at: float


# --------------------------------------------------------------------------- fault injection


@dataclass
class InjectedFault:
    status: int
    remaining: int
    method: str | None
    path_prefix: str | None
    retry_after: float | None
    body: str | None
    drop_connection: bool
    after_processing: bool

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )


class FaultInjector:
    """Replaces the responses to upcoming requests with errors or dropped connections."""

    def __init__(self) -> None:
        self._faults: list[InjectedFault] = []

    def add(
        self,
        *,
        status: int = 500,
        count: int = 1,
        method: str | None = None,
        path_prefix: str | None = None,
        retry_after: float | None = None,
        body: str | None = None,
        drop_connection: bool = False,
        after_processing: bool = False,
    ) -> None:
        """Make the next ``count`` requests matching ``method`` and ``path_prefix`` fail.

        ``path_prefix`` is matched against the full path, e.g. ``"/v1/videos"``. The response has
        ``status`` and an OpenAI-style error body, or ``body`` verbatim (served as JSON, so it can
        be malformed JSON with a 200). ``retry_after`` (seconds) is sent as ``Retry-After`` rounded
        up to whole seconds and exactly as ``retry-after-ms``, the header OpenAI's SDKs read first.
        ``drop_connection`` closes the connection without any response instead. With
        ``after_processing`` the request is handled normally first (a create really creates the
        job) and only its response is replaced: a "lost response".
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        self._faults.append(
            InjectedFault(
                status=status,
                remaining=count,
                method=method,
                path_prefix=path_prefix,
                retry_after=retry_after,
                body=body,
                drop_connection=drop_connection,
                after_processing=after_processing,
            )
        )

    def clear(self) -> None:
        self._faults.clear()

    @property
    def pending(self) -> int:
        """How many injected responses have not been used yet."""
        return sum(fault.remaining for fault in self._faults)

    def take(self, method: str, path: str) -> InjectedFault | None:
        """Use up one response of the first fault matching this request, if any."""
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None


def _fault_response(fault: InjectedFault) -> web.Response:
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(fault.retry_after))
        headers["retry-after-ms"] = str(round(fault.retry_after * 1000))
    if fault.body is not None:
        return web.Response(
            status=fault.status, text=fault.body, content_type="application/json", headers=headers
        )
    if fault.status == 429:
        error = ApiError(
            429,
            "Rate limit reached for requests. Please try again later.",
            error_type="requests",
            code="rate_limit_exceeded",
        )
    elif fault.status >= 500:
        error = ApiError(
            fault.status,
            "The server had an error while processing your request. Sorry about that!",
            error_type="server_error",
        )
    else:
        error = ApiError(fault.status, f"Injected HTTP {fault.status} error.")
    return error.response(headers)


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answered with an OpenAI-style body: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code

    def response(self, headers: Mapping[str, str] | None = None) -> web.Response:
        body = {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }
        return web.json_response(body, status=self.status, headers=headers)


def _invalid(param: str, message: str, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _quoted(values: Iterable[str]) -> str:
    quoted = [f"'{value}'" for value in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _not_found(video_id: str) -> ApiError:
    return ApiError(404, f"Video with id '{video_id}' not found.")


# --------------------------------------------------------------------------- jobs


@dataclass
class _Job:
    id: str
    model: str
    prompt: str
    size: str
    seconds: str
    created_at: float
    remixed_from_video_id: str | None
    first_frame: bytes | None
    blocked: bool
    directory: Path
    rendered: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once rendering has finished (or was never needed)."""
    rendered_at: float | None = None
    render_error: str | None = None

    @property
    def dimensions(self) -> tuple[int, int]:
        width, height = self.size.split("x")
        return int(width), int(height)


@dataclass(frozen=True)
class _JobState:
    status: VideoStatus
    progress: int
    completed_at: float | None = None
    error: dict[str, str] | None = None


@dataclass(frozen=True)
class _RequestBody:
    """A request body parsed once, shared by the request log and the handlers."""

    json: Any = None
    form: MultiDictProxy[str | bytes | bytearray | web.FileField] | None = None
    error: ApiError | None = None
    """Why the body is unusable; raised by handlers that need a body."""


_BODY_KEY: Final = web.RequestKey("parsed_body", _RequestBody)


class LocalRenderer:
    """The local Videos API server; use as ``async with LocalRenderer(config) as renderer``.

    ``port=0`` picks a free port; ``base_url`` then reports the real one.
    """

    def __init__(
        self, config: LocalRendererConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or LocalRendererConfig()
        self.faults = FaultInjector()
        self.requests: list[RecordedRequest] = []
        self.app = create_app(self)
        self._host = host
        self._port = port
        self._jobs: dict[str, _Job] = {}
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._render_pool: ThreadPoolExecutor | None = None
        self._runner: web.AppRunner | None = None
        self._temporary_dir: tempfile.TemporaryDirectory[str] | None = None
        self._data_dir: Path | None = None
        self._webhook_session: ClientSession | None = None

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
        if self.config.data_dir is None:
            self._temporary_dir = tempfile.TemporaryDirectory(prefix="videobot-local-api-")
            self._data_dir = Path(self._temporary_dir.name)
        else:
            self._data_dir = self.config.data_dir
            self._data_dir.mkdir(parents=True, exist_ok=True)
        self._render_pool = ThreadPoolExecutor(_MAX_CONCURRENT_RENDERS, thread_name_prefix="local-render")
        if self._webhooks_enabled:
            self._webhook_session = ClientSession(timeout=_WEBHOOK_TIMEOUT)
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in self._job_tasks:
            task.cancel()
        await asyncio.gather(*self._job_tasks, return_exceptions=True)
        if self._render_pool is not None:
            # Renders already running cannot be interrupted; wait for them so that no thread is
            # still writing into the data directory when it is removed.
            await asyncio.to_thread(self._render_pool.shutdown, wait=True, cancel_futures=True)
            self._render_pool = None
        if self._webhook_session is not None:
            await self._webhook_session.close()
            self._webhook_session = None
        if self._temporary_dir is not None:
            await asyncio.to_thread(self._temporary_dir.cleanup)
            self._temporary_dir = None

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}{API_PREFIX}"

    # ----------------------------------------------------------------------- test helpers

    def video(self, video_id: str) -> dict[str, Any]:
        """The job's current VideoResource, exactly as ``GET /videos/{id}`` would return it."""
        return self._resource(self._jobs[video_id], self.config.clock())

    async def wait_rendered(self, video_id: str, timeout: float = 30) -> None:  # noqa: ASYNC109
        """Wait until the job's files are rendered (or it is known there will be none)."""
        async with asyncio.timeout(timeout):
            await self._jobs[video_id].rendered.wait()

    # ----------------------------------------------------------------------- middlewares

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
    async def _record_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        received_at = self.config.clock()
        try:
            body = await _parse_body(request)
        except BaseException:
            # Too large, or the client went away: still log that the request arrived.
            self._record(_recorded(request, None, received_at))
            raise
        self._record(_recorded(request, body, received_at))
        request[_BODY_KEY] = body
        return await handler(request)

    def _record(self, recorded: RecordedRequest) -> None:
        self.requests.append(recorded)
        # Bounded so that a long-running `videobot local-api` does not grow without limit.
        if len(self.requests) > _MAX_RECORDED_REQUESTS:
            del self.requests[0]

    @web.middleware
    async def _latency_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.config.latency_seconds > 0:
            await asyncio.sleep(self.config.latency_seconds)
        return await handler(request)

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        fault = self.faults.take(request.method, request.path)
        if fault is None:
            return await handler(request)
        if fault.after_processing:
            # The outcome is discarded either way: the client only ever sees the fault.
            with contextlib.suppress(ApiError, web.HTTPException):
                await handler(request)
        if fault.drop_connection:
            if request.transport is not None:
                request.transport.close()
            # Writing this to the closed transport fails quietly; aiohttp treats it as a client
            # disconnect.
            return web.Response()
        return _fault_response(fault)

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
        fields = _fields(request, _CREATE_FIELDS)
        prompt = _validated_prompt(fields.get("prompt"))
        model = self._validated_model(fields.get("model", _DEFAULT_MODEL))
        size = self._validated_size(model, fields.get("size", _DEFAULT_SIZE))
        seconds = self._validated_seconds(fields.get("seconds", _DEFAULT_SECONDS))
        first_frame = None
        if "input_reference" in fields:
            first_frame = await _validated_reference(fields["input_reference"], size)
        job = self._start_job(
            model=model, prompt=prompt, size=size, seconds=seconds, first_frame=first_frame, remixed_from=None
        )
        return self._json(self._resource(job, self.config.clock()), poll_hint=True)

    async def _remix_video(self, request: web.Request) -> web.Response:
        source = self._job(request.match_info["video_id"])
        fields = _fields(request, _REMIX_FIELDS)
        prompt = _validated_prompt(fields.get("prompt"))
        now = self.config.clock()
        state = self._state(source, now)
        if state.status != "completed":
            raise ApiError(
                400,
                f"Video '{source.id}' is {state.status}; only completed videos can be remixed.",
                code="invalid_video_status",
            )
        if self._expired(state, now):
            raise ApiError(
                400, f"The assets of video '{source.id}' have expired; it can no longer be remixed."
            )
        job = self._start_job(
            model=source.model,
            prompt=prompt,
            size=source.size,
            seconds=source.seconds,
            first_frame=None,
            remixed_from=source.id,
        )
        return self._json(self._resource(job, now), poll_hint=True)

    async def _list_videos(self, request: web.Request) -> web.Response:
        limit = _query_limit(request.query.get("limit", "20"))
        order = request.query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _invalid("order", f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.")
        jobs = list(self._jobs.values())
        if order == "desc":
            jobs.reverse()
        after = request.query.get("after")
        if after is not None:
            position = next((index for index, job in enumerate(jobs) if job.id == after), None)
            if position is None:
                raise _invalid("after", f"No video found with id '{after}'.")
            jobs = jobs[position + 1 :]
        page = jobs[:limit]
        now = self.config.clock()
        body = {
            "object": "list",
            "data": [self._resource(job, now) for job in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(jobs) > len(page),
        }
        return self._json(body, poll_hint=True)

    async def _retrieve_video(self, request: web.Request) -> web.Response:
        job = self._job(request.match_info["video_id"])
        return self._json(self._resource(job, self.config.clock()), poll_hint=True)

    async def _delete_video(self, request: web.Request) -> web.Response:
        job = self._job(request.match_info["video_id"])
        status = self._state(job, self.config.clock()).status
        if status not in ("completed", "failed"):
            raise ApiError(
                400,
                f"Video '{job.id}' is {status}; only completed or failed videos can be deleted.",
                code="invalid_video_status",
            )
        del self._jobs[job.id]
        await asyncio.to_thread(shutil.rmtree, job.directory, ignore_errors=True)
        return self._json({"id": job.id, "object": "video.deleted", "deleted": True})

    async def _download_content(self, request: web.Request) -> web.FileResponse:
        job = self._job(request.match_info["video_id"])
        variant = request.query.get("variant", "video")
        asset = _ASSETS.get(variant)
        if asset is None:
            raise _invalid(
                "variant", f"Invalid value: '{variant}'. Supported values are: {_quoted(_ASSETS)}."
            )
        now = self.config.clock()
        state = self._state(job, now)
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
        if self._expired(state, now):
            raise ApiError(404, f"The assets of video '{job.id}' have expired.", code="video_expired")
        return web.FileResponse(job.directory / asset.filename, headers={"Content-Type": asset.content_type})

    # ----------------------------------------------------------------------- validation

    def _validated_model(self, value: object) -> str:
        if not isinstance(value, str) or value not in self.config.models:
            raise _invalid(
                "model", f"Invalid value: '{value}'. Supported values are: {_quoted(self.config.models)}."
            )
        return value

    def _validated_size(self, model: str, value: object) -> str:
        sizes = self.config.models[model]
        if not isinstance(value, str) or value not in sizes:
            raise _invalid(
                "size", f"Invalid value: '{value}'. Supported sizes for {model} are: {_quoted(sizes)}."
            )
        return value

    def _validated_seconds(self, value: object) -> str:
        allowed = self.config.allowed_seconds
        if not isinstance(value, str):
            raise _invalid(
                "seconds",
                f"Invalid type for 'seconds': expected one of {_quoted(allowed)} as a string.",
                code="invalid_type",
            )
        if value not in allowed:
            raise _invalid("seconds", f"Invalid value: '{value}'. Supported values are: {_quoted(allowed)}.")
        return value

    # ----------------------------------------------------------------------- jobs

    @property
    def _webhooks_enabled(self) -> bool:
        return bool(self.config.webhook_url and self.config.webhook_secret)

    def _job(self, video_id: str) -> _Job:
        job = self._jobs.get(video_id)
        if job is None:
            raise _not_found(video_id)
        return job

    def _start_job(
        self,
        *,
        model: str,
        prompt: str,
        size: str,
        seconds: str,
        first_frame: bytes | None,
        remixed_from: str | None,
    ) -> _Job:
        assert self._data_dir is not None, "the renderer is not started"
        video_id = f"video_{uuid.uuid4().hex}"
        prompt_folded = prompt.casefold()
        job = _Job(
            id=video_id,
            model=model,
            prompt=prompt,
            size=size,
            seconds=seconds,
            created_at=self.config.clock(),
            remixed_from_video_id=remixed_from,
            first_frame=first_frame,
            blocked=any(word.casefold() in prompt_folded for word in self.config.blocked_words),
            directory=self._data_dir / video_id,
        )
        self._jobs[video_id] = job
        task = asyncio.create_task(self._run_job(job), name=f"local-render-{video_id}")
        self._job_tasks.add(task)
        task.add_done_callback(self._job_tasks.discard)
        return job

    async def _run_job(self, job: _Job) -> None:
        if job.blocked:
            job.rendered.set()
        else:
            await self._render(job)
        if self._webhooks_enabled:
            await self._send_outcome_event(job)

    async def _render(self, job: _Job) -> None:
        assert self._render_pool is not None
        width, height = job.dimensions
        render = functools.partial(
            _render_assets,
            job.directory,
            prompt=job.prompt,
            width=width,
            height=height,
            seconds=float(job.seconds),
            fps=self.config.fps,
            first_frame=job.first_frame,
            noise=self.config.noise,
            target_bitrate=self.config.target_bitrate,
        )
        try:
            await asyncio.get_running_loop().run_in_executor(self._render_pool, render)
        except Exception as exc:
            log.exception("Rendering %s failed", job.id)
            job.render_error = f"Rendering failed: {exc}"
        else:
            job.rendered_at = self.config.clock()
        finally:
            # Only the render needed the reference image; don't hold megabytes per job after it.
            job.first_frame = None
            job.rendered.set()

    def _state(self, job: _Job, now: float) -> _JobState:
        config = self.config
        elapsed = now - job.created_at
        if elapsed < config.queue_seconds:
            return _JobState("queued", 0)
        # Moderation "runs" as the job leaves the queue.
        if job.blocked:
            error = {
                "code": "moderation_blocked",
                "message": "Your request was blocked by our moderation system.",
            }
            return _JobState("failed", 0, error=error)
        if job.render_error is not None:
            return _JobState("failed", 0, error={"code": "render_failed", "message": job.render_error})
        generated_at = job.created_at + config.generation_seconds
        if job.rendered_at is not None and now >= generated_at:
            return _JobState("completed", 100, completed_at=max(generated_at, job.rendered_at))
        working_span = config.generation_seconds - config.queue_seconds
        fraction = (elapsed - config.queue_seconds) / working_span if working_span > 0 else 1.0
        # Never 0 (that reads as "not started") nor 100 (that reads as "done") while in progress.
        return _JobState("in_progress", min(99, max(1, int(fraction * 100))))

    def _expired(self, state: _JobState, now: float) -> bool:
        return state.completed_at is not None and now >= state.completed_at + self.config.asset_ttl_seconds

    def _resource(self, job: _Job, now: float) -> dict[str, Any]:
        state = self._state(job, now)
        completed_at = expires_at = None
        if state.completed_at is not None:
            completed_at = int(state.completed_at)
            expires_at = int(state.completed_at + self.config.asset_ttl_seconds)
        return {
            "id": job.id,
            "object": "video",
            "model": job.model,
            "status": state.status,
            "progress": state.progress,
            "created_at": int(job.created_at),
            "completed_at": completed_at,
            "expires_at": expires_at,
            "prompt": job.prompt,
            "size": job.size,
            "seconds": job.seconds,
            "remixed_from_video_id": job.remixed_from_video_id,
            "error": state.error,
        }

    def _json(self, body: Mapping[str, Any], *, poll_hint: bool = False) -> web.Response:
        headers = {}
        if poll_hint and self.config.poll_after_ms is not None:
            headers[POLL_AFTER_HEADER] = str(self.config.poll_after_ms)
        return web.json_response(body, headers=headers)

    # ----------------------------------------------------------------------- webhooks

    async def _send_outcome_event(self, job: _Job) -> None:
        """Once the job is completed or failed, send the matching signed webhook event (best effort)."""
        # The status is a function of an arbitrary clock, so there is nothing to wait on but time.
        while True:
            state = self._state(job, self.config.clock())
            if state.status in ("completed", "failed"):
                break
            await asyncio.sleep(_WEBHOOK_CLOCK_POLL_SECONDS)
        assert self._webhook_session is not None and self.config.webhook_url and self.config.webhook_secret
        event_id = f"evt_{uuid.uuid4().hex}"
        payload = json.dumps(
            {
                "id": event_id,
                "object": "event",
                "created_at": int(self.config.clock()),
                "type": f"video.{state.status}",
                "data": {"id": job.id},
            }
        )
        # The signature timestamp is checked against the receiver's real clock, so it must be the
        # wall-clock time even when the job timeline runs on an injected clock.
        sent_at = datetime.now(UTC)
        signature = Webhook(self.config.webhook_secret).sign(event_id, sent_at, payload)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        try:
            async with self._webhook_session.post(
                self.config.webhook_url, data=payload, headers=headers
            ) as reply:
                if reply.status >= 300:
                    log.warning("Webhook for %s was answered with HTTP %d", job.id, reply.status)
        except (ClientError, TimeoutError) as exc:
            log.warning("Webhook for %s could not be delivered: %s", job.id, exc)


# --------------------------------------------------------------------------- request parsing


async def _parse_body(request: web.Request) -> _RequestBody:
    if not request.body_exists:
        return _RequestBody()
    if request.content_type == "multipart/form-data":
        try:
            return _RequestBody(form=await request.post())
        except ValueError as exc:
            return _RequestBody(error=ApiError(400, f"Could not parse the multipart/form-data body: {exc}"))
    raw = await request.read()
    if request.content_type != "application/json":
        return _RequestBody(
            error=ApiError(
                400,
                f"Unsupported Content-Type '{request.content_type}'; send application/json or multipart/form-data.",
            )
        )
    try:
        return _RequestBody(json=json.loads(raw))
    except ValueError:
        return _RequestBody(
            error=ApiError(
                400,
                "We could not parse the JSON body of your request. The body must be valid JSON.",
            )
        )


def _recorded(request: web.Request, body: _RequestBody | None, received_at: float) -> RecordedRequest:
    form: dict[str, str | RecordedFile] | None = None
    if body is not None and body.form is not None:
        form = {}
        for name, value in body.form.items():
            if isinstance(value, str):
                form[name] = value
            elif isinstance(value, web.FileField):
                form[name] = RecordedFile(value.filename, value.content_type, _file_size(value))
            else:
                form[name] = RecordedFile(None, "application/octet-stream", len(value))
    return RecordedRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers=CIMultiDictProxy(request.headers.copy()),
        json_body=body.json if body is not None else None,
        form=form,
        received_at=received_at,
    )


def _file_size(file_field: web.FileField) -> int:
    stream = file_field.file
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    return size


def _fields(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The request's parameters, from a JSON object or multipart fields; file parts become bytes."""
    body = request[_BODY_KEY]
    if body.error is not None:
        raise body.error
    if body.form is not None:
        fields: dict[str, Any] = {}
        for name, value in body.form.items():
            if isinstance(value, web.FileField):
                fields[name] = value.file.read()
            elif isinstance(value, bytearray | bytes):
                fields[name] = bytes(value) if name == "input_reference" else value.decode(errors="replace")
            else:
                fields[name] = value
    elif body.json is None:
        fields = {}
    elif isinstance(body.json, dict):
        fields = body.json
    else:
        raise ApiError(400, "The request body must be a JSON object.")
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise _invalid(
            unknown[0], f"Unrecognized request argument supplied: {unknown[0]}", code="unknown_parameter"
        )
    return fields


def _query_limit(raw: str) -> int:
    try:
        limit = int(raw)
    except ValueError:
        raise _invalid(
            "limit", f"Invalid 'limit': expected an integer, got '{raw}'.", code="invalid_type"
        ) from None
    if not 0 <= limit <= 100:
        raise _invalid("limit", f"Invalid 'limit': {limit} is outside 0..100.")
    return limit


def _validated_prompt(value: object) -> str:
    if value is None:
        raise _invalid("prompt", "Missing required parameter: 'prompt'.", code="missing_required_parameter")
    if not isinstance(value, str):
        raise _invalid("prompt", "Invalid type for 'prompt': expected a string.", code="invalid_type")
    if not value:
        raise _invalid("prompt", "Invalid 'prompt': empty string. Expected a string with minimum length 1.")
    if len(value) > MAX_PROMPT_CHARS:
        raise _invalid(
            "prompt",
            f"Invalid 'prompt': string too long. Expected a string with maximum length {MAX_PROMPT_CHARS}, "
            f"but got a string with length {len(value)} instead.",
            code="string_above_max_length",
        )
    return value


async def _validated_reference(value: object, size: str) -> bytes:
    """Return the reference image's bytes after checking it is a usable image of exactly ``size``."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, dict) and isinstance(value.get("image_url"), str):
        data = _decode_data_url(value["image_url"])
    elif isinstance(value, dict) and "file_id" in value:
        raise _invalid("input_reference", "The local renderer has no file storage; upload the image instead.")
    else:
        raise _invalid(
            "input_reference",
            "input_reference must be an uploaded image file or an object with a base64 data: image_url.",
        )
    try:
        actual_size = await asyncio.to_thread(_image_size, data)
    except ImageError as error:
        raise _invalid("input_reference", error.user_message) from None
    if f"{actual_size[0]}x{actual_size[1]}" != size:
        raise _invalid("input_reference", "Inpaint image must match the requested width and height")
    return data


def _image_size(data: bytes) -> tuple[int, int]:
    sniff_image(data)
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def _decode_data_url(url: str) -> bytes:
    header, comma, encoded = url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64") and comma):
        raise _invalid(
            "input_reference",
            "The local renderer cannot fetch URLs; send image_url as a base64 data: URL or upload the file.",
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise _invalid("input_reference", "input_reference.image_url is not valid base64.") from None


# --------------------------------------------------------------------------- rendering


def _render_assets(
    directory: Path,
    *,
    prompt: str,
    width: int,
    height: int,
    seconds: float,
    fps: int,
    first_frame: bytes | None,
    noise: bool,
    target_bitrate: int | None,
) -> None:
    """Render the MP4, then its thumbnail and spritesheet, into ``directory`` (runs in a worker)."""
    directory.mkdir(parents=True, exist_ok=True)
    video = directory / _ASSETS["video"].filename
    render_video(
        video,
        prompt=prompt,
        width=width,
        height=height,
        seconds=seconds,
        fps=fps,
        first_frame=first_frame,
        target_bitrate=target_bitrate,
        noise=noise,
    )
    make_thumbnail(video, directory / _ASSETS["thumbnail"].filename)
    make_spritesheet(video, directory / _ASSETS["spritesheet"].filename)


# --------------------------------------------------------------------------- app and entry point


def create_app(renderer: LocalRenderer) -> web.Application:
    """The aiohttp application serving ``renderer``'s Videos API under ``/v1``."""
    app = web.Application(
        client_max_size=_MAX_REQUEST_BYTES,
        # Outermost first: errors are converted last, every request is logged before faults or auth
        # can answer it, and faults win over auth like a network problem would.
        middlewares=[
            renderer._error_middleware,
            renderer._record_middleware,
            renderer._latency_middleware,
            renderer._fault_middleware,
            renderer._auth_middleware,
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
        await asyncio.Event().wait()
    finally:
        await renderer.close()
