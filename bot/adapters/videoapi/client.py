"""An aiohttp client for the OpenAI Videos API protocol.

Strict in what it sends (exactly the spec's fields), lenient in what it accepts (see ``models``).
Retries use exponential backoff with jitter, honour ``Retry-After`` / ``retry-after-ms``, and never
let a retry create two paid jobs: a create whose answer was lost is not sent again but reported as
``SubmitUncertain`` (the job tracker looks it up in the provider's list).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

import aiohttp
from pydantic import BaseModel, SecretStr, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from bot.domain.provider import Character, Video, VideoList, code_from_text
from bot.domain.provider_errors import (
    AuthenticationError,
    BadRequest,
    ConnectionFailed,
    DownloadTooLarge,
    NotFound,
    RateLimited,
    ServerError,
    SubmitUncertain,
    UnsupportedEndpoint,
    VideoAPIError,
)
from bot.services.failpoints import FailPoint, reached
from bot.services.ratelimit import ProviderBudget, RequestKind

log = logging.getLogger(__name__)

Variant = Literal["video", "thumbnail", "spritesheet"]
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

_RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
# Statuses after which a create request was certainly not processed, so sending it again is safe.
_NOT_PROCESSED_STATUSES = frozenset({408, 409, 429})
_CHUNK = 256 * 1024
_WRITE_BYTES = 1024 * 1024
DEFAULT_MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
# Called with the size the provider announces (None: no usable Content-Length) before anything is
# written; raising refuses the download (the tracker checks free disk space here).
RoomCheck = Callable[[int | None], None]


class _Retryable(Exception):
    """Internal: one attempt failed in a way worth another try."""

    def __init__(self, error: VideoAPIError, *, maybe_processed: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.maybe_processed = maybe_processed


def _retry_after(headers: Mapping[str, str]) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        with contextlib.suppress(ValueError):
            return max(0.0, float(ms) / 1000)
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def poll_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("openai-poll-after-ms")
    if value is None:
        return None
    try:
        return max(0.0, float(value) / 1000)
    except ValueError:
        return None


def _error_from_response(status: int, body: bytes, headers: Mapping[str, str]) -> VideoAPIError:
    message, code, param = "", None, None
    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("detail") or "")
            code = err.get("code") if isinstance(err.get("code"), str) else None
            if code is not None and code.isdigit():
                # LiteLLM puts the HTTP status there; the upstream's code is inside the message.
                code = None
            param = err.get("param") if isinstance(err.get("param"), str) else None
        elif isinstance(err, str):
            message = err
        if not message and isinstance(payload.get("detail"), str):
            message = payload["detail"]
    if not message:
        message = body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
    code = code or code_from_text(message)
    kwargs: dict[str, Any] = {"status": status, "code": code, "param": param}
    if status == 429:
        return RateLimited(message, retry_after=_retry_after(headers), **kwargs)
    if status in (401, 403):
        return AuthenticationError(message, **kwargs)
    if status == 404:
        return NotFound(message, **kwargs)
    if status >= 500 or status in _RETRYABLE_STATUSES:
        return ServerError(message, retry_after=_retry_after(headers), **kwargs)
    return BadRequest(message, **kwargs)


class VideoAPIClient:
    """One provider endpoint. Use as ``async with VideoAPIClient(url, key) as client:``."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None = None,
        *,
        max_attempts: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        user_agent: str = "videobot",
        requests_per_minute: int | None = None,
        creates_per_minute: int | None = None,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_download_bytes = max_download_bytes
        self._api_key = api_key
        self._max_attempts = max_attempts
        self._backoff = wait_exponential_jitter(
            multiplier=backoff_initial, max=backoff_max, jitter=backoff_initial
        )
        self._backoff_max = backoff_max
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self.last_poll_after: float | None = None
        # Optional endpoints are discovered at run time: None = not tried yet.
        self.supports_list: bool | None = None
        self.supports_extend: bool | None = None
        self.supports_edit: bool | None = None
        self.supports_characters: bool | None = None
        self.request_counts: dict[str, int] = {}
        # Downloads first, then status, then submissions (see ``ProviderBudget``).
        self.budget = (
            ProviderBudget(requests_per_minute, creates_per_minute=creates_per_minute)
            if requests_per_minute
            else None
        )

    def __repr__(self) -> str:  # never show the key
        return f"VideoAPIClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> VideoAPIClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is None:
            headers = {"User-Agent": self._user_agent}
            if self._api_key is not None and self._api_key.get_secret_value():
                headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
            self._session = aiohttp.ClientSession(headers=headers, timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("VideoAPIClient is not open; use it as an async context manager")
        return self._session

    # -- transport -----------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.error.retry_after is not None:
            return min(exc.error.retry_after, self._backoff_max)
        return float(self._backoff(state))

    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        form: Callable[[], aiohttp.FormData] | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        """One HTTP exchange. Maps failures to typed errors; retryable ones wrapped in ``_Retryable``."""
        url = self.base_url + path
        endpoint = f"{method} {_endpoint_name(path)}"
        if self.budget is not None:
            await self.budget.acquire(request_kind(method, path))
        self.request_counts[endpoint] = self.request_counts.get(endpoint, 0) + 1
        try:
            async with self.session.request(
                method, url, params=params, json=json_body, data=form() if form else None
            ) as resp:
                body = await resp.read()
                headers = resp.headers
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            raise _Retryable(
                ConnectionFailed(f"cannot connect to the Videos API at {self.base_url}: {exc.os_error}"),
                maybe_processed=False,
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The request may have been sent and processed before the connection broke.
            raise _Retryable(
                ConnectionFailed(f"the Videos API connection failed: {type(exc).__name__}"),
                maybe_processed=True,
            ) from exc
        poll_after = poll_after_seconds(headers)
        if poll_after is not None:
            self.last_poll_after = poll_after
        if status >= 400:
            error = _error_from_response(status, body, headers)
            if status in _RETRYABLE_STATUSES:
                raise _Retryable(error, maybe_processed=status not in _NOT_PROCESSED_STATUSES)
            raise error
        try:
            return json.loads(body), headers
        except ValueError as exc:
            raise _Retryable(
                ConnectionFailed(
                    f"the Videos API returned a body that is not JSON (HTTP {status})", status=status
                ),
                maybe_processed=True,
            ) from exc

    async def _with_retries(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        retry_processed: bool = True,
    ) -> T:
        """Run ``attempt`` with backoff. With ``retry_processed=False`` only failures after which the
        request certainly was not processed (429, 408, 409, connect errors) are retried."""

        def should_retry(exc: BaseException) -> bool:
            return isinstance(exc, _Retryable) and (retry_processed or not exc.maybe_processed)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception(should_retry),
            reraise=True,
        )
        try:
            async for round_ in retrying:
                with round_:
                    return await attempt()
        except _Retryable as exc:
            raise exc.error from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        body, _ = await self._with_retries(lambda: self._attempt(method, path, **kwargs))
        return body

    # -- endpoints -----------------------------------------------------------------------------

    async def create(
        self,
        *,
        prompt: str,
        model: str,
        size: str,
        seconds: int,
        input_reference: bytes | None = None,
        input_reference_type: str = "image/png",
    ) -> Video:
        """``POST /videos``; multipart when there is a reference image, JSON otherwise.

        Never creates two jobs for one call: only failures after which the request certainly was not
        processed are retried; one that may have reached the provider raises ``SubmitUncertain``
        (the caller looks for the video before sending it again).
        """
        fields = {"model": model, "prompt": prompt, "seconds": str(seconds), "size": size}

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            for key, value in fields.items():
                data.add_field(key, value)
            extension = input_reference_type.split("/")[-1].replace("jpeg", "jpg")
            data.add_field(
                "input_reference",
                input_reference or b"",
                filename=f"reference.{extension}",
                content_type=input_reference_type,
            )
            return data

        async def attempt() -> Video:
            try:
                if input_reference is not None:
                    body, _ = await self._attempt("POST", "/videos", form=form)
                else:
                    body, _ = await self._attempt("POST", "/videos", json_body=fields)
            except _Retryable as exc:
                if exc.maybe_processed:
                    # Sending it again could pay twice. The job tracker looks for it at the
                    # provider, where it knows which videos already belong to other jobs.
                    raise SubmitUncertain(
                        "the provider may or may not have started this video; not retrying to avoid "
                        f"paying twice ({exc.error.message})",
                        status=exc.error.status,
                        code=exc.error.code,
                    ) from None
                raise
            return self._parse(Video, body)

        return await self._with_retries(attempt)

    async def retrieve(self, video_id: str) -> Video:
        return self._parse(Video, await self._request("GET", f"/videos/{_quoted(video_id)}"))

    async def list(self, *, limit: int = 100, after: str | None = None, order: str = "desc") -> VideoList:
        """One page of ``GET /videos``. Raises ``UnsupportedEndpoint`` when the provider lacks it."""
        params = {"limit": str(limit), "order": order}
        if after:
            params["after"] = after
        try:
            body = await self._request("GET", "/videos", params=params)
        except (NotFound, BadRequest) as exc:
            # A refused cursor says nothing about the endpoint: the video it names may be gone.
            if (not after and exc.status in (400, 404, 405)) or exc.status == 405:
                self.supports_list = False
                raise UnsupportedEndpoint(f"list is not supported: {exc.message}", status=exc.status) from exc
            raise
        self.supports_list = True
        return self._parse(VideoList, body)

    async def delete(self, video_id: str) -> bool:
        body = await self._request("DELETE", f"/videos/{_quoted(video_id)}")
        return bool(isinstance(body, dict) and body.get("deleted", True))

    async def remix(self, video_id: str, prompt: str) -> Video:
        """``POST /videos/{id}/remix``. Only retried when the request certainly was not processed
        (the list can't tell a lost remix from another job with the same prompt)."""
        body, _ = await self._with_retries(
            lambda: self._attempt("POST", f"/videos/{_quoted(video_id)}/remix", json_body={"prompt": prompt}),
            retry_processed=False,
        )
        return self._parse(Video, body)

    async def download(
        self,
        video_id: str,
        dest: Path,
        *,
        variant: Variant = "video",
        check_room: RoomCheck | None = None,
    ) -> int:
        """Stream one asset to ``dest`` (via a temporary name, then rename). Returns its size in bytes.

        At most ``max_download_bytes`` are accepted: a larger ``Content-Length`` is refused before
        the body is read, and a body that runs past the limit (no header, or a wrong one) is cut
        there. Either raises ``DownloadTooLarge`` and is not retried; nothing is left on disk."""
        return await self._with_retries(lambda: self._download_once(video_id, dest, variant, check_room))

    async def _download_once(
        self, video_id: str, dest: Path, variant: Variant, check_room: RoomCheck | None
    ) -> int:
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        limit = self.max_download_bytes
        if self.budget is not None:
            await self.budget.acquire(RequestKind.DOWNLOAD)
        self.request_counts["GET content"] = self.request_counts.get("GET content", 0) + 1
        try:
            async with self.session.get(
                f"{self.base_url}/videos/{_quoted(video_id)}/content", params={"variant": variant}
            ) as resp:
                if resp.status >= 400:
                    error = _error_from_response(resp.status, await resp.read(), resp.headers)
                    if resp.status in _RETRYABLE_STATUSES:
                        raise _Retryable(error, maybe_processed=False)
                    raise error
                announced = resp.content_length
                if announced is not None and announced > limit:
                    # Refused from the header: the body is never read (leaving the block closes
                    # the connection rather than draining it).
                    raise DownloadTooLarge(
                        f"the provider's file is {announced} bytes, over the {limit}-byte download limit",
                        limit=limit,
                        size=announced,
                    )
                if check_room is not None:
                    check_room(announced)
                size = 0
                out = await asyncio.to_thread(partial.open, "wb")
                try:
                    # File writes and fsync happen in a worker thread: a slow disk must not stall
                    # the gateway heartbeat or interaction acknowledgements. The chunks are written
                    # a few together (up to ``_WRITE_BYTES``): each trip to the thread costs the
                    # event loop a wake-up, and the body arrives in chunks of at most 256 KiB.
                    held: list[bytes] = []
                    held_bytes = 0
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        if size > limit:
                            raise DownloadTooLarge(
                                f"the provider's file ran past the {limit}-byte download limit",
                                limit=limit,
                            )
                        held.append(chunk)
                        held_bytes += len(chunk)
                        if held_bytes >= _WRITE_BYTES:
                            await asyncio.to_thread(out.writelines, held)
                            held, held_bytes = [], 0
                        reached(FailPoint.DURING_DOWNLOAD)
                    await asyncio.to_thread(_flush_to_disk, out, held)
                finally:
                    out.close()
        except (aiohttp.ClientError, TimeoutError) as exc:
            partial.unlink(missing_ok=True)
            raise _Retryable(
                ConnectionFailed(f"downloading the video failed: {type(exc).__name__}"), maybe_processed=False
            ) from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, dest)
        return size

    @staticmethod
    def _parse(model: type[M], body: Any) -> M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise ConnectionFailed(
                f"the Videos API returned an unexpected body: {exc.error_count()} problems"
            ) from None

    # -- extensions, edits, characters -----------------------------------------------------------
    # Optional endpoints: a provider that lacks one answers 404/405 for the route itself, which
    # raises ``UnsupportedEndpoint`` and sets ``supports_extend`` / ``supports_edit`` /
    # ``supports_characters`` to False so the features they carry are no longer offered. A 404 that
    # names a video (the source is gone) stays ``NotFound``. Like remix, none of these is sent again
    # after a failure that may have reached the provider (each may start a paid job).

    async def extend(self, video_id: str, prompt: str, seconds: int) -> Video:
        """``POST /videos/extensions``: the completed video ``video_id`` followed by ``seconds`` more
        of ``prompt``. The answer's ``seconds`` is the stitched total."""
        body = {"video": {"id": video_id}, "prompt": prompt, "seconds": str(seconds)}
        answer = await self._optional("extend", "POST", "/videos/extensions", json_body=body)
        return self._parse(Video, answer)

    async def edit(
        self,
        prompt: str,
        *,
        video_id: str | None = None,
        clip: Path | bytes | None = None,
        clip_type: str = "video/mp4",
    ) -> Video:
        """``POST /videos/edits``: a new video that edits a completed video (``video_id``, JSON) or an
        uploaded ``clip`` (a file or its bytes, multipart) as ``prompt`` says. Give exactly one."""
        if (video_id is None) == (clip is None):
            raise ValueError("edit needs exactly one of video_id and clip")
        if video_id is not None:
            body = {"video": {"id": video_id}, "prompt": prompt}
            answer = await self._optional("edit", "POST", "/videos/edits", json_body=body)
        else:
            assert clip is not None
            data = await _clip_bytes(clip)
            answer = await self._optional(
                "edit", "POST", "/videos/edits", form=_upload_form({"prompt": prompt}, data, clip_type)
            )
        return self._parse(Video, answer)

    async def create_character(
        self, name: str, video: Path | bytes, video_type: str = "video/mp4"
    ) -> Character:
        """``POST /videos/characters``: a character named ``name`` from an uploaded video."""
        data = await _clip_bytes(video)
        answer = await self._optional(
            "characters", "POST", "/videos/characters", form=_upload_form({"name": name}, data, video_type)
        )
        return self._parse(Character, answer)

    async def get_character(self, character_id: str) -> Character:
        """``GET /videos/characters/{id}``; ``NotFound`` when the provider has no such character."""
        answer = await self._optional(
            "characters", "GET", f"/videos/characters/{_quoted(character_id)}", named_id=character_id
        )
        return self._parse(Character, answer)

    async def _optional(
        self, feature: str, method: str, path: str, *, named_id: str | None = None, **kwargs: Any
    ) -> Any:
        """One request to an optional endpoint (see above); ``feature`` names its ``supports_*``."""
        try:
            body, _ = await self._with_retries(
                lambda: self._attempt(method, path, **kwargs), retry_processed=method == "GET"
            )
        except (NotFound, BadRequest, ServerError) as exc:
            if _route_missing(exc, named_id):
                setattr(self, f"supports_{feature}", False)
                raise UnsupportedEndpoint(
                    f"{method} {path.split('/videos', 1)[-1] or '/'} is not supported by this provider: "
                    f"{exc.message}",
                    status=exc.status,
                ) from exc
            if not isinstance(exc, ServerError):
                # The endpoint answered about the request itself (a missing source, a bad value).
                setattr(self, f"supports_{feature}", True)
            raise
        setattr(self, f"supports_{feature}", True)
        return body


def _flush_to_disk(out: BinaryIO, last: list[bytes]) -> None:
    """Write the ``last`` chunks and make the file durable."""
    out.writelines(last)
    out.flush()
    os.fsync(out.fileno())


def _quoted(video_id: str) -> str:
    """Provider ids are opaque (some are 200+ characters): never let one change the path."""
    return urllib.parse.quote(video_id, safe="")


def request_kind(method: str, path: str) -> RequestKind:
    """Where a request waits in the provider budget: every POST (create, remix, extension, edit,
    character) is a submission; reads are status checks, except a video's content."""
    if method == "GET":
        return RequestKind.DOWNLOAD if path.endswith("/content") else RequestKind.STATUS
    if method == "DELETE":
        return RequestKind.CLEANUP
    return RequestKind.SUBMIT


def _endpoint_name(path: str) -> str:
    """``/videos/abc/content`` → ``videos/{id}/content``, for per-endpoint request counts
    (``videos/extensions``, ``videos/edits`` and ``videos/characters/{id}`` keep their names)."""
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[1] in _NAMED_ROUTES:
        if len(parts) >= 3:
            parts[2] = "{id}"
    elif len(parts) >= 2:
        parts[1] = "{id}"
    return "/".join(parts)


_NAMED_ROUTES = frozenset({"extensions", "edits", "characters"})
# What servers answer for a route they do not have: OpenAI ("Invalid URL (POST /v1/...)"), FastAPI
# apps such as LiteLLM and SGLang ("Not Found", "Method Not Allowed"), Express ("Cannot POST ...").
_MISSING_ROUTE = re.compile(
    r"invalid url|^\s*not found\s*$|method not allowed|cannot (get|post)\b|no route|unknown (url|route|endpoint)",
    re.IGNORECASE,
)


# LiteLLM answers an operation its upstream provider lacks with Python's NotImplementedError.
_NOT_IMPLEMENTED = re.compile(r"notimplementederror|not implemented", re.IGNORECASE)


def _route_missing(exc: VideoAPIError, named_id: str | None) -> bool:
    """Whether an error says the endpoint itself is missing rather than the video or character."""
    if exc.status in (405, 501):
        return True
    if exc.status == 500:
        return bool(_NOT_IMPLEMENTED.search(exc.message))
    if exc.status not in (400, 404):
        return False
    if named_id is not None and named_id in exc.message:
        return False
    return bool(_MISSING_ROUTE.search(exc.message) or _NOT_IMPLEMENTED.search(exc.message))


async def _clip_bytes(clip: Path | bytes) -> bytes:
    return clip if isinstance(clip, bytes) else await asyncio.to_thread(clip.read_bytes)


def _upload_form(fields: Mapping[str, str], video: bytes, video_type: str) -> Callable[[], aiohttp.FormData]:
    """A multipart body of ``fields`` and the ``video`` file part, rebuilt for each attempt."""
    extension = {"video/quicktime": "mov", "video/webm": "webm"}.get(video_type, "mp4")

    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        for key, value in fields.items():
            data.add_field(key, value)
        data.add_field("video", video, filename=f"video.{extension}", content_type=video_type)
        return data

    return form
