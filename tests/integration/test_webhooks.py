"""The bot's HTTP server over real HTTP: Standard Webhooks verification, replays (remembered in a real
SQLite file, across restarts), size cap, /healthz."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from bot.adapters.http.server import (
    HEADER_TIMEOUT_SECONDS,
    MAX_WEBHOOK_BODY_BYTES,
    REPLAY_WINDOW_SECONDS,
    WEBHOOK_PATH,
    BotHTTPServer,
    HealthChecks,
    VideoWebhookReceiver,
)
from bot.adapters.sql.webhook_events import WebhookEventLog
from bot.adapters.sqlite.store import Store
from bot.domain.errors import ConfigError
from tests.backends import Backend

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Health:
    """Switchable answers for the three checks."""

    database: bool = True
    gateway: bool = True
    tracker: bool = True
    database_raises: bool = False

    async def database_check(self) -> bool:
        if self.database_raises:
            raise OSError("disk I/O error")
        return self.database

    def checks(self) -> HealthChecks:
        return HealthChecks(
            database=self.database_check, gateway=lambda: self.gateway, tracker=lambda: self.tracker
        )


@dataclass
class Harness:
    server: BotHTTPServer
    session: aiohttp.ClientSession
    health: Health
    store: Store
    notified: list[tuple[str, str]] = field(default_factory=list)

    async def close(self) -> None:
        await self.session.close()
        await self.server.stop()
        await self.store.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def post_event(self, body: str | bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        async with self.session.post(f"{self.url}{WEBHOOK_PATH}", data=body, headers=headers) as resp:
            return resp.status, await resp.json()


def event_body(event_type: str = "video.completed", video_id: str = "video_123") -> str:
    return json.dumps(
        {
            "id": f"evt_{secrets.token_hex(8)}",
            "object": "event",
            "created_at": int(datetime.now(UTC).timestamp()),
            "type": event_type,
            "data": {"id": video_id},
        }
    )


def signed(
    body: str, *, secret: str = SECRET, event_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    """Headers exactly as a Standard Webhooks sender makes them."""
    event_id = event_id or f"msg_{secrets.token_hex(8)}"
    at = at or datetime.now(UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, at, body),
    }


async def start_harness(
    database: Path | Backend,
    *,
    with_secret: bool = True,
    header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS,
    **receiver_options: Any,
) -> Harness:
    """The server with a receiver whose replay memory is the ``webhook_events`` table of ``database``
    (a SQLite file, or the test's database on a backend)."""
    health = Health()
    notified: list[tuple[str, str]] = []

    def on_video_event(video_id: str, event_type: str) -> None:
        notified.append((video_id, event_type))

    store = await (database.connect() if isinstance(database, Backend) else Store.connect(database))
    receiver = (
        VideoWebhookReceiver(
            SecretStr(SECRET),
            on_video_event,
            event_ids=WebhookEventLog(store, window_seconds=REPLAY_WINDOW_SECONDS),
            **receiver_options,
        )
        if with_secret
        else None
    )
    server = BotHTTPServer(
        health.checks(), receiver, host="127.0.0.1", port=0, header_timeout_seconds=header_timeout_seconds
    )
    await server.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    return Harness(server, session, health, store, notified)


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path / "bot.db")
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture
async def http_without_secret(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path / "bot.db", with_secret=False)
    try:
        yield harness
    finally:
        await harness.close()


# --------------------------------------------------------------------------- webhooks


@pytest.mark.parametrize("event_type", ["video.completed", "video.failed"])
async def test_a_signed_video_event_refreshes_that_video(http: Harness, event_type: str) -> None:
    long_id = "video_" + "x" * 300  # gateways use long opaque ids
    body = event_body(event_type, long_id)
    status, reply = await http.post_event(body, signed(body))
    assert (status, reply) == (200, {"status": "accepted"})
    assert http.notified == [(long_id, event_type)]


async def test_a_tampered_body_is_refused(http: Harness) -> None:
    body = event_body(video_id="video_mine")
    headers = signed(body)
    status, _ = await http.post_event(body.replace("video_mine", "video_evil"), headers)
    assert status == 401
    assert http.notified == []


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda sig: sig[:-6] + "AAAAA=", id="altered"),
        pytest.param(lambda sig: "v1,not-base64!!", id="garbage"),
        pytest.param(lambda sig: "v1" + sig[3:], id="no-comma"),
        pytest.param(lambda sig: "v2," + sig.split(",", 1)[1], id="unknown-version"),
    ],
)
async def test_a_tampered_signature_is_refused(http: Harness, mangle: Callable[[str], str]) -> None:
    body = event_body()
    headers = signed(body)
    headers["webhook-signature"] = mangle(headers["webhook-signature"])
    status, _ = await http.post_event(body, headers)
    assert status == 401
    assert http.notified == []


async def test_a_signature_made_with_another_secret_is_refused(http: Harness) -> None:
    body = event_body()
    other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    status, _ = await http.post_event(body, signed(body, secret=other))
    assert status == 401 and http.notified == []


async def test_one_valid_signature_among_several_is_enough(http: Harness) -> None:
    # Senders rotating secrets send "v1,<old> v1,<new>".
    body = event_body()
    headers = signed(body)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    status, _ = await http.post_event(body, headers)
    assert status == 200 and len(http.notified) == 1


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)], ids=["stale", "future"])
async def test_timestamps_outside_the_tolerance_are_refused(http: Harness, offset: timedelta) -> None:
    body = event_body()
    # Correctly signed, so only the timestamp can be the reason.
    status, reply = await http.post_event(body, signed(body, at=datetime.now(UTC) + offset))
    assert status == 400 and "tolerance" in reply["error"]
    assert http.notified == []


async def test_a_timestamp_within_the_tolerance_is_accepted(http: Harness) -> None:
    body = event_body()
    status, _ = await http.post_event(body, signed(body, at=datetime.now(UTC) - timedelta(minutes=4)))
    assert status == 200 and len(http.notified) == 1


async def test_a_replayed_event_is_answered_but_not_processed_again(http: Harness) -> None:
    body = event_body(video_id="video_once")
    headers = signed(body)
    first = await http.post_event(body, headers)
    second = await http.post_event(body, headers)
    assert first == (200, {"status": "accepted"})
    assert second == (200, {"status": "duplicate"})
    assert http.notified == [("video_once", "video.completed")]
    # The same id with a forged body is not a "duplicate": the signature is checked first.
    forged = body.replace("video_once", "video_other")
    status, _ = await http.post_event(forged, headers)
    assert status == 401 and http.notified == [("video_once", "video.completed")]


async def test_refused_events_do_not_use_up_their_id(http: Harness) -> None:
    body = event_body(video_id="video_retry")
    headers = signed(body, event_id="msg_fixed")
    bad = dict(headers, **{"webhook-signature": "v1,AAAA"})
    assert (await http.post_event(body, bad))[0] == 401
    assert await http.post_event(body, headers) == (200, {"status": "accepted"})
    assert http.notified == [("video_retry", "video.completed")]


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_missing_headers_are_refused(http: Harness, header: str) -> None:
    body = event_body()
    headers = signed(body)
    del headers[header]
    status, reply = await http.post_event(body, headers)
    assert status == 400 and header in reply["error"]
    assert http.notified == []


async def test_a_non_numeric_timestamp_is_refused(http: Harness) -> None:
    body = event_body()
    headers = dict(signed(body), **{"webhook-timestamp": "yesterday"})
    status, _ = await http.post_event(body, headers)
    assert status == 400


async def test_an_oversize_body_is_refused_before_verification(http: Harness) -> None:
    body = json.dumps({"type": "video.completed", "data": {"id": "v"}, "pad": "x" * MAX_WEBHOOK_BODY_BYTES})
    status, _ = await http.post_event(body, signed(body))
    assert status == 413 and http.notified == []


async def test_an_oversize_body_without_content_length_is_refused(http: Harness) -> None:
    body = "x" * (MAX_WEBHOOK_BODY_BYTES + 1)

    async def chunks() -> AsyncIterator[bytes]:  # chunked transfer: no Content-Length to trust
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096].encode()

    async with http.session.post(f"{http.url}{WEBHOOK_PATH}", data=chunks(), headers=signed(body)) as resp:
        assert resp.status == 413
    assert http.notified == []


async def test_unknown_event_types_are_acknowledged_and_ignored(http: Harness) -> None:
    body = event_body("video.created")
    status, reply = await http.post_event(body, signed(body))
    assert (status, reply) == (200, {"status": "ignored"})
    assert http.notified == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param('{"type": "video.completed", "data": {}}', id="no-video-id"),
        pytest.param('{"type": "video.failed", "data": {"id": 7}}', id="id-not-a-string"),
    ],
)
async def test_signed_but_malformed_events_are_refused(http: Harness, body: str) -> None:
    status, _ = await http.post_event(body, signed(body))
    assert status == 400 and http.notified == []


async def test_without_a_secret_there_is_no_webhook_route(http_without_secret: Harness) -> None:
    body = event_body()
    async with http_without_secret.session.post(
        f"{http_without_secret.url}{WEBHOOK_PATH}", data=body, headers=signed(body)
    ) as resp:
        assert resp.status == 404
    async with http_without_secret.session.get(f"{http_without_secret.url}/healthz") as resp:
        assert resp.status == 200


async def test_the_secret_never_shows_in_reprs_errors_or_logs(
    http: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = event_body()
    await http.post_event(body, signed(body))
    await http.post_event(body, dict(signed(body), **{"webhook-signature": "v1,AAAA"}))
    receiver = http.server.webhooks
    assert receiver is not None
    raw_key = SECRET.removeprefix("whsec_")
    assert raw_key not in repr(receiver) and raw_key not in caplog.text
    with pytest.raises(ConfigError) as refused:
        VideoWebhookReceiver(
            SecretStr("whsec_"), lambda video_id, event_type: None, event_ids=receiver.event_ids
        )
    assert "whsec_" in str(refused.value)  # explains the format, echoes nothing


async def test_a_replay_after_a_restart_is_still_a_duplicate(backend: Backend) -> None:
    database = backend
    body = event_body(video_id="video_before_restart")
    headers = signed(body)
    first = await start_harness(database)
    try:
        assert await first.post_event(body, headers) == (200, {"status": "accepted"})
        assert first.notified == [("video_before_restart", "video.completed")]
    finally:
        await first.close()
    # A new process: a new store on the same database, a new receiver with nothing in memory.
    second = await start_harness(database)
    try:
        assert await second.post_event(body, headers) == (200, {"status": "duplicate"})
        assert second.notified == []
    finally:
        await second.close()


async def test_simultaneous_deliveries_of_one_event_are_processed_once(backend: Backend) -> None:
    """Five deliveries at once, to two processes' receivers on one database: one is accepted."""
    body = event_body(video_id="video_raced")
    headers = signed(body)
    first, second = await start_harness(backend), await start_harness(backend)
    try:
        replies = await asyncio.gather(
            *(receiver.post_event(body, headers) for receiver in (first, second, first, second, first))
        )
    finally:
        await first.close()
        await second.close()
    assert sorted(reply["status"] for _, reply in replies) == ["accepted"] + ["duplicate"] * 4
    assert sorted(first.notified + second.notified) == [("video_raced", "video.completed")]


async def test_remembered_event_ids_expire_and_old_ones_are_pruned(backend: Backend) -> None:
    now = [1_000_000.0]
    async with backend.open() as store:
        ids = WebhookEventLog(store, window_seconds=10, clock=lambda: now[0])
        assert await ids.claim("a")
        assert not await ids.claim("a")
        now[0] += 11
        assert await ids.claim("a")  # past the window: its timestamp would be refused anyway
        for name in "bcde":
            assert await ids.claim(name)
        now[0] += 5
        assert not await ids.claim("b")
        now[0] += 6
        assert await ids.claim("f")
        remembered = {row[0] for row in await store.fetchall("SELECT id FROM webhook_events")}
    assert remembered == {"f"}  # the table holds one window's worth, not everything ever seen


# --------------------------------------------------------------------------- health


async def test_healthz_reports_ok_when_everything_works(http: Harness) -> None:
    async with http.session.get(f"{http.url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "database": True, "gateway": True, "tracker": True}


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ({"gateway": False}, {"database": True, "gateway": False, "tracker": True}),
        ({"tracker": False}, {"database": True, "gateway": True, "tracker": False}),
        ({"database": False}, {"database": False, "gateway": True, "tracker": True}),
        ({"database_raises": True}, {"database": False, "gateway": True, "tracker": True}),
    ],
)
async def test_healthz_reports_degraded_with_503(
    http: Harness, broken: dict[str, bool], expected: dict[str, bool]
) -> None:
    for name, value in broken.items():
        setattr(http.health, name, value)
    async with http.session.get(f"{http.url}/healthz") as resp:
        assert resp.status == 503
        assert await resp.json() == {"status": "degraded", **expected}


async def test_more_routes_can_be_added_before_start_only() -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    server = BotHTTPServer(Health().checks(), host="127.0.0.1", port=0)
    server.add_routes([web.get("/downloads/{token}", hello)])
    async with server, aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{server.port}/downloads/abc") as resp:
            assert await resp.text() == "hi"
        with pytest.raises(RuntimeError):
            server.add_routes([web.get("/late", hello)])


async def test_a_port_in_use_is_a_configuration_error(http: Harness) -> None:
    clash = BotHTTPServer(Health().checks(), host="127.0.0.1", port=http.server.port)
    with pytest.raises(ConfigError, match="HTTP_PORT"):
        await clash.start()
