"""The bot's HTTP server against hostile or broken clients, over real sockets: slow headers and
bodies are cut off, disconnects are quiet, bad link signatures and pathological JSON are refused."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.adapters.http.links import KEY_META, MediaLinks
from bot.adapters.http.server import LINGER_SECONDS, WEBHOOK_PATH, BotHTTPServer
from bot.adapters.sqlite.store import Store
from bot.logsafety import MASK, redact
from tests.integration.test_webhooks import Harness, Health, event_body, signed, start_harness

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 0.5
SLOW_CLIENTS = 20


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(
        tmp_path / "bot.db", header_timeout_seconds=HEADER_TIMEOUT, body_timeout_seconds=BODY_TIMEOUT
    )
    try:
        yield harness
    finally:
        await harness.close()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    try:
        while chunk := await reader.read(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


async def slow_headers_client(port: int) -> float:
    """Sends a request's headers one byte every 50 ms (they would take ~10 s in all); returns how
    long the server kept the connection open."""
    request = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + "".join(f"X-Padding-{i}: {'x' * 20}\r\n" for i in range(5))
        + "\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened = time.monotonic()
    sent = 0

    async def trickle() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError):  # the server hung up: that's the point
            for byte in request:
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.05)

    sender = asyncio.create_task(trickle())
    try:
        received = await read_until_closed(reader)
        closed = time.monotonic() - opened
    finally:
        sender.cancel()
        writer.close()
    assert sent < len(request), "the whole request was sent before the server gave up"
    assert received == b""  # closed without an answer: there was no complete request to answer
    return closed


async def test_slow_header_senders_are_disconnected_after_the_header_timeout(http: Harness) -> None:
    started = time.monotonic()
    async with asyncio.timeout(HEADER_TIMEOUT + 5):
        open_for = await asyncio.gather(*(slow_headers_client(http.server.port) for _ in range(SLOW_CLIENTS)))
    print(
        f"\n{SLOW_CLIENTS} slow-header connections closed after {min(open_for):.2f}-{max(open_for):.2f} s "
        f"(header timeout {HEADER_TIMEOUT} s; all done in {time.monotonic() - started:.2f} s)"
    )
    assert all(HEADER_TIMEOUT * 0.9 <= seconds <= HEADER_TIMEOUT + 3 for seconds in open_for), open_for
    # The server still answers everyone else.
    body = event_body()
    assert await http.post_event(body, signed(body)) == (200, {"status": "accepted"})


async def test_a_slow_second_request_on_a_kept_alive_connection_is_cut_off_too(http: Harness) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http.server.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            await reader.readuntil(b"}")  # the end of the JSON body: the connection stays open
        answered = time.monotonic()
        with contextlib.suppress(ConnectionError):  # the server hangs up mid-trickle
            for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n":
                writer.write(bytes([byte]))
                await writer.drain()
                if reader.at_eof():
                    break
                await asyncio.sleep(0.05)
        async with asyncio.timeout(HEADER_TIMEOUT + 3):
            assert await read_until_closed(reader) == b""
        assert HEADER_TIMEOUT * 0.9 <= time.monotonic() - answered <= HEADER_TIMEOUT + 3
    finally:
        writer.close()


async def test_a_connection_that_never_sends_anything_is_closed(http: Harness) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http.server.port)
    try:
        async with asyncio.timeout(HEADER_TIMEOUT + 2):
            assert await read_until_closed(reader) == b""
    finally:
        writer.close()


async def test_a_stalled_body_is_answered_408_and_the_connection_closed(
    http: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    body = event_body().encode()
    headers = signed(body.decode())
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + "\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", http.server.port)
    started = time.monotonic()
    try:
        writer.write(head + body[:10])  # complete headers, then a tenth of the body, then nothing
        await writer.drain()
        async with asyncio.timeout(BODY_TIMEOUT + 5):
            status_line = await reader.readline()
            answered = time.monotonic() - started
            rest = await read_until_closed(reader)
            closed = time.monotonic() - started
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert b"did not arrive within" in rest
    assert BODY_TIMEOUT * 0.9 <= answered <= BODY_TIMEOUT + 1
    assert closed <= BODY_TIMEOUT + LINGER_SECONDS + 1  # not the default 10 s of lingering
    assert http.notified == []
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_mid_body_disconnect_logs_one_quiet_line(
    http: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = event_body().encode()
    headers = signed(body.decode())
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + "\r\n"
    ).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", http.server.port)
    writer.write(head + body[:20])
    await writer.drain()
    writer.transport.abort()  # a reset, as when the sender's process dies

    def disconnect_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "disconnected before its body arrived" in r.getMessage()]

    async with asyncio.timeout(5):
        while not disconnect_lines():  # noqa: ASYNC110 - log records have no event to wait on
            await asyncio.sleep(0.01)
    # One more request through the same server: whatever else the disconnect would log (a
    # traceback from aiohttp) is logged by the time it is answered.
    later = event_body(video_id="video_later")
    assert await http.post_event(later, signed(later)) == (200, {"status": "accepted"})
    assert len(disconnect_lines()) == 1 and disconnect_lines()[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert "Traceback" not in caplog.text
    assert http.notified == [("video_later", "video.completed")]  # the cut-off event did nothing


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[" * 30_000 + "]" * 30_000, id="arrays-nested-30000-deep"),
        pytest.param('{"a": ' * 9_000 + "1" + "}" * 9_000, id="objects-nested-9000-deep"),
        pytest.param('{"type": "video.completed", "data": {"id": "video_1"', id="truncated"),
        pytest.param('{"type": "video.completed", "data": {"id": "video_1"}}}', id="trailing-brace"),
        pytest.param("", id="empty"),
    ],
)
async def test_correctly_signed_bodies_that_are_not_json_get_400(
    http: Harness, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(body.encode()) < 64 * 1024  # within the size cap: the parser itself must cope
    status, reply = await http.post_event(body, signed(body))
    assert (status, reply) == (400, {"error": "the body is not JSON"})
    assert http.notified == []
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    # A refused event doesn't use up its id: fixed and resent with the same id, it is accepted.
    good = event_body()
    resent = signed(good)
    assert (await http.post_event(good, resent))[0] == 200


def test_the_server_listens_on_loopback_only_by_default() -> None:
    assert BotHTTPServer(Health().checks()).host == "127.0.0.1"


async def test_a_default_server_is_not_reachable_on_other_addresses() -> None:
    async with BotHTTPServer(Health().checks(), port=0) as server:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.close()
        # 127.0.0.2 is another address of this host (all of 127/8 is loopback on Linux); a server
        # on 0.0.0.0 would accept there, as it would on the host's public address.
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.2", server.port)


# --------------------------------------------------------------------------- media links


@pytest.fixture
async def links(tmp_path: Path) -> AsyncIterator[tuple[MediaLinks, str, list[float]]]:
    now = [time.time()]
    async with Store.open(tmp_path / "bot.db") as store:
        loaded = await MediaLinks.load(store, "http://127.0.0.1")
        links = MediaLinks(store, "http://127.0.0.1", loaded._key, clock=lambda: now[0])
        server = BotHTTPServer(Health().checks(), port=0)
        server.add_routes(links.routes())
        async with server:
            yield links, f"http://127.0.0.1:{server.port}", now


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("%C3%A9t%C3%A9", id="non-ascii"),
        pytest.param("%F0%9F%8E%AC" * 10, id="emoji"),
        pytest.param("AAAA", id="wrong"),
        pytest.param("%00", id="nul"),
    ],
)
async def test_a_bad_link_signature_is_404(
    links: tuple[MediaLinks, str, list[float]], signature: str, caplog: pytest.LogCaptureFixture
) -> None:
    media, base, _ = links
    _, expires = media.url_for(1, "video-1.mp4")
    bad = f"{base}/media/1/{expires}/{signature}/video-1.mp4"
    async with aiohttp.ClientSession() as session, session.get(bad) as response:
        assert response.status == 404
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_correctly_signed_link_passes_the_signature_check(
    links: tuple[MediaLinks, str, list[float]],
) -> None:
    media, base, now = links
    url, _ = media.url_for(7, "video-7.mp4")
    local = base + url.removeprefix(media.base_url)
    async with aiohttp.ClientSession() as session:
        async with session.get(local) as response:
            assert response.status == 404  # signed correctly, but there is no job 7
        now[0] += 8 * 24 * 3600
        async with session.get(local) as response:
            assert response.status == 410  # only a valid signature gets as far as the expiry check


async def test_the_link_key_is_masked_in_logs_from_its_creation(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "bot.db") as store:
        await MediaLinks.load(store, "http://127.0.0.1")
    with sqlite3.connect(tmp_path / "bot.db") as db:
        (key,) = db.execute("SELECT value FROM meta WHERE key = ?", (KEY_META,)).fetchone()
    assert redact(f"executing ('{KEY_META}', '{key}')") == f"executing ('{KEY_META}', '{MASK}')"


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"POST /webhooks/videos HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
            id="broken-chunked-body",
        ),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", id="bad-header-line"),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n", id="huge-header"
        ),
    ],
)
async def test_a_malformed_request_gets_400_and_one_quiet_line(
    http: Harness, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection("127.0.0.1", http.server.port)
    try:
        writer.write(request_bytes)
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await read_until_closed(reader)
    finally:
        writer.close()
    assert answer.split(b"\r\n", 1)[0].split(b" ", 2)[1] in (b"400", b"431"), answer[:100]
    refusals = [r for r in caplog.records if "refused with HTTP" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.INFO and "\n" not in refusals[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


async def test_a_bug_in_a_handler_still_logs_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug of ours")

    server = BotHTTPServer(Health().checks(), port=0)
    server.add_routes([web.get("/broken", broken)])
    async with (
        server,
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.port}/broken") as response,
    ):
        assert response.status == 500
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert len(errors) == 1 and "a bug of ours" in str(errors[0].exc_info[1])  # type: ignore[index]
