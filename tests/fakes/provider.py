"""The local renderer as the tests' video provider: the product's ``LocalRenderer`` plus a log of every
request it received and injected faults, attached through its ``middlewares`` extension point.

``InstrumentedRenderer`` is a ``LocalRenderer`` (same config, ``base_url``, lifecycle) with:

- ``requests``: every request as received, before any fault or auth check answered it;
- ``faults``: upcoming responses replaced by errors (429 with ``Retry-After``, 5xx), verbatim
  bodies (malformed JSON with a 200), dropped connections, or "lost responses" whose request was
  processed first (a 502 or a dropped connection after the create really created the job);
- ``video(id)`` and ``wait_rendered(id)`` to look at a job without going through HTTP.

Expired assets, moderation blocks and webhook emission are the renderer's own behaviour, controlled
through its config (``asset_ttl_seconds``, ``blocked_words``, ``webhook_url``/``webhook_secret``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDictProxy

from bot.localapi import LocalRenderer, LocalRendererConfig
from bot.localapi.jobs import resource
from bot.localapi.protocol import ApiError, RequestBody, request_body

__all__ = [
    "FaultInjector",
    "InjectedFault",
    "InstrumentedRenderer",
    "RecordedFile",
    "RecordedRequest",
    "wait_rendered",
]


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


def _recorded(request: web.Request, body: RequestBody | None, received_at: float) -> RecordedRequest:
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

    def response(self) -> web.Response:
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(self.retry_after))
            headers["retry-after-ms"] = str(round(self.retry_after * 1000))
        if self.body is not None:
            return web.Response(
                status=self.status, text=self.body, content_type="application/json", headers=headers
            )
        if self.status == 429:
            error = ApiError(
                429,
                "Rate limit reached for requests. Please try again later.",
                error_type="requests",
                code="rate_limit_exceeded",
            )
        elif self.status >= 500:
            error = ApiError(
                self.status,
                "The server had an error while processing your request. Sorry about that!",
                error_type="server_error",
            )
        else:
            error = ApiError(self.status, f"Injected HTTP {self.status} error.")
        return error.response(headers)


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

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        fault = self.take(request.method, request.path)
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
        return fault.response()


# --------------------------------------------------------------------------- the instrumented renderer


class InstrumentedRenderer(LocalRenderer):
    """``LocalRenderer`` with a request log and fault injection; ``middlewares`` run inside both."""

    def __init__(
        self,
        config: LocalRendererConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        middlewares: Sequence[Middleware] = (),
    ) -> None:
        self.requests: list[RecordedRequest] = []
        self.faults = FaultInjector()
        # The log comes first so that it also holds the requests a fault answered.
        super().__init__(
            config,
            host=host,
            port=port,
            middlewares=[self._record_middleware, self.faults.middleware, *middlewares],
        )

    @web.middleware
    async def _record_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        received_at = self.config.clock()
        try:
            body = await request_body(request)
        except BaseException:
            # Too large, or the client went away: still log that the request arrived.
            self.requests.append(_recorded(request, None, received_at))
            raise
        self.requests.append(_recorded(request, body, received_at))
        return await handler(request)

    def video(self, video_id: str) -> dict[str, Any]:
        """The job's current VideoResource, exactly as ``GET /videos/{id}`` would return it."""
        job = self.jobs.get(video_id)
        assert job is not None, f"no job {video_id}"
        return resource(job, self.config, self.config.clock())

    async def wait_rendered(self, video_id: str, timeout: float = 30) -> None:  # noqa: ASYNC109
        """Wait until the job's files are rendered (or it is known there will be none)."""
        await wait_rendered(self, video_id, timeout)


async def wait_rendered(renderer: LocalRenderer, video_id: str, timeout: float = 30) -> None:  # noqa: ASYNC109
    """Wait until the job's files are rendered (or it is known there will be none)."""
    job = renderer.jobs.get(video_id)
    if job is None:
        raise KeyError(video_id)
    async with asyncio.timeout(timeout):
        await job.rendered.wait()
