"""Attachment downloads only reach Discord's CDN or the one configured origin, over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from bot.adapters.attachments import AttachmentRefused, fetch_attachment, is_allowed_attachment_url
from tests.fakes.discord import FakeDiscord

CAP = 1024 * 1024
PICTURE = bytes(range(256)) * 400  # 100 KiB


@dataclass
class Server:
    """A real aiohttp server on 127.0.0.1 that records every request it receives."""

    origin: str = ""
    seen: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serve(routes: dict[str, web.Response | str]) -> AsyncIterator[Server]:
    """``routes`` maps a path to a response, or to a URL to redirect to."""
    server = Server()

    async def handle(request: web.Request) -> web.StreamResponse:
        server.seen.append(request.path)
        answer = routes.get(request.path)
        if answer is None:
            return web.Response(status=404)
        if isinstance(answer, str):
            raise web.HTTPFound(answer)
        return answer

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.origin = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def counting_session() -> AsyncIterator[tuple[aiohttp.ClientSession, list[str]]]:
    """A client session that records every request it starts, so "no connection" is observable."""
    started: list[str] = []

    async def on_start(
        _session: aiohttp.ClientSession, _ctx: object, params: aiohttp.TraceRequestStartParams
    ) -> None:
        started.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        yield session, started


# ------------------------------------------------------------------------------ the allow-list


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.discordapp.com/attachments/1/2/cat.png?ex=1&is=2&hm=3",
        "https://media.discordapp.net/attachments/1/2/cat.png",
        "https://CDN.DiscordApp.com/attachments/1/2/cat.png",
        "https://cdn.discordapp.com:443/attachments/1/2/cat.png",
        "http://127.0.0.1:8765/attachments/1/cat.png",
    ],
)
def test_allowed_urls(url: str) -> None:
    assert is_allowed_attachment_url(url, extra_origin="http://127.0.0.1:8765/api/v10")


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.discordapp.com/attachments/1/2/cat.png",  # not https
        "https://cdn.discordapp.com:8443/attachments/1/2/cat.png",  # not the default port
        "https://cdn.discordapp.com.evil.example/cat.png",
        "https://evil.example/cdn.discordapp.com/cat.png",
        "https://user:pw@cdn.discordapp.com/cat.png",
        "https://discord.com/attachments/1/2/cat.png",
        "http://127.0.0.1:8766/attachments/1/cat.png",  # the configured host, another port
        "https://127.0.0.1:8765/attachments/1/cat.png",  # the configured host and port, another scheme
        "http://localhost:8765/attachments/1/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "/attachments/1/cat.png",
        "",
        "not a url at all",
    ],
)
def test_refused_urls(url: str) -> None:
    assert not is_allowed_attachment_url(url, extra_origin="http://127.0.0.1:8765/api/v10")


def test_without_a_configured_origin_only_the_cdn_passes() -> None:
    assert is_allowed_attachment_url("https://cdn.discordapp.com/a.png", extra_origin=None)
    assert not is_allowed_attachment_url("http://127.0.0.1:8765/a.png", extra_origin=None)


# ------------------------------------------------------------------------------ fetching


async def test_allowed_origin_serves_the_bytes() -> None:
    async with (
        serve({"/attachments/1/cat.png": web.Response(body=PICTURE)}) as server,
        aiohttp.ClientSession() as session,
    ):
        data = await fetch_attachment(
            session,
            f"{server.origin}/attachments/1/cat.png?ex=1&hm=2",
            max_bytes=CAP,
            extra_origin=server.origin + "/api/v10",
        )
    assert data == PICTURE
    assert server.seen == ["/attachments/1/cat.png"]


async def test_same_host_other_port_is_refused_without_any_request() -> None:
    async with (
        serve({"/latest/meta-data/": web.Response(text="secret-role")}) as other,
        serve({}) as configured,
        counting_session() as (session, started),
    ):
        with pytest.raises(AttachmentRefused) as caught:
            await fetch_attachment(
                session,
                f"{other.origin}/latest/meta-data/",
                max_bytes=CAP,
                extra_origin=configured.origin,
            )
    assert caught.value.reason == "origin"
    assert (
        caught.value.user_message == "That attachment isn't hosted on Discord, so the bot won't download it."
    )
    assert other.seen == [] and configured.seen == []
    assert started == []


async def test_declared_oversize_is_refused() -> None:
    async with (
        serve({"/big.png": web.Response(body=b"x" * (CAP + 1))}) as server,
        aiohttp.ClientSession() as session,
    ):
        with pytest.raises(AttachmentRefused) as caught:
            await fetch_attachment(
                session, f"{server.origin}/big.png", max_bytes=CAP, extra_origin=server.origin
            )
    assert caught.value.reason == "too-large"
    assert caught.value.user_message == "That attachment is larger than 1.0 MiB; upload a smaller file."


async def test_redirect_to_a_disallowed_origin_is_refused_and_not_followed() -> None:
    async with serve({"/latest/meta-data/": web.Response(text="secret-role")}) as target:
        redirect = f"{target.origin}/latest/meta-data/"
        async with serve({"/attachments/1/cat.png": redirect}) as server, aiohttp.ClientSession() as session:
            with pytest.raises(AttachmentRefused) as caught:
                await fetch_attachment(
                    session,
                    f"{server.origin}/attachments/1/cat.png",
                    max_bytes=CAP,
                    extra_origin=server.origin,
                )
    assert caught.value.reason == "redirect"
    assert server.seen == ["/attachments/1/cat.png"]
    assert target.seen == []


async def test_error_status_is_a_refusal_with_the_status() -> None:
    async with serve({}) as server, aiohttp.ClientSession() as session:
        with pytest.raises(AttachmentRefused, match="HTTP 404") as caught:
            await fetch_attachment(
                session, f"{server.origin}/gone.png", max_bytes=CAP, extra_origin=server.origin
            )
    assert caught.value.reason == "status"


async def test_unreachable_configured_origin_is_a_refusal_not_a_traceback() -> None:
    async with serve({}) as server:
        origin = server.origin
    # The server is gone, so nothing listens on its port any more.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(AttachmentRefused) as caught:
            await fetch_attachment(session, f"{origin}/a.png", max_bytes=CAP, extra_origin=origin)
    assert caught.value.reason == "network"
    assert caught.value.user_message == "The bot couldn't download that attachment; upload it again."


# ------------------------------------------------------------------------------ servers that lie


@dataclass
class LyingServer:
    """Raw HTTP/1.1 over asyncio streams: answers with ``head`` and then streams up to ``total``
    bytes, recording how much it managed to send before the client went away."""

    head: bytes
    total: int
    origin: str = ""
    sent: int = 0
    requests: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.head)
            chunk = b"y" * 65536
            while self.sent < self.total:
                writer.write(chunk)
                await writer.drain()
                self.sent += len(chunk)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.finished.set()


@contextlib.asynccontextmanager
async def lying(head: bytes, total: int) -> AsyncIterator[LyingServer]:
    liar = LyingServer(head, total)
    server = await asyncio.start_server(liar.handle, "127.0.0.1", 0)
    liar.origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield liar
    finally:
        server.close()
        await server.wait_closed()


async def test_body_without_length_is_cut_at_the_cap() -> None:
    total = 256 * CAP
    async with lying(
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n", total
    ) as liar:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(AttachmentRefused) as caught:
                await fetch_attachment(
                    session, f"{liar.origin}/cat.png", max_bytes=CAP, extra_origin=liar.origin
                )
        await asyncio.wait_for(liar.finished.wait(), timeout=10)
    assert caught.value.reason == "too-large"
    # The client hung up: the liar could only push the cap plus what socket buffers held.
    assert liar.sent < total // 4


async def test_body_longer_than_declared_is_refused() -> None:
    # aiohttp's parser rejects bytes past the declared length, so a liar gets a refusal, not a
    # truncated file that would then fail later as a "damaged image".
    total = 64 * CAP
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
    async with lying(head, total) as liar:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(AttachmentRefused) as caught:
                await fetch_attachment(
                    session, f"{liar.origin}/cat.png", max_bytes=CAP, extra_origin=liar.origin
                )
        await asyncio.wait_for(liar.finished.wait(), timeout=10)
    assert caught.value.reason == "network"
    assert liar.sent < total


async def test_the_fake_discords_attachments_pass_with_its_api_base_as_the_origin() -> None:
    # How the bot is wired in tests: DISCORD_API_BASE_URL points at the fake, whose CDN route
    # serves attachment URLs on the same origin.
    async with FakeDiscord() as fake, aiohttp.ClientSession() as session:
        payload = fake.add_attachment(PICTURE, "cat.png")
        data = await fetch_attachment(session, payload["url"], max_bytes=CAP, extra_origin=fake.api_base)
        assert data == PICTURE
        with pytest.raises(AttachmentRefused):
            await fetch_attachment(session, payload["url"], max_bytes=CAP, extra_origin=None)
