"""The log-redaction filter: each credential shape, lazily formatted arguments, exception text, and
records from any logger below the handler's."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from bot.logsafety import MASK, RedactingFilter, install_redaction, redact, register_secret

# Shaped like Discord's: base64 of "interaction:<id>:<random>".
INTERACTION_TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OTpYWVo" + secrets.token_urlsafe(60)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger tree of its own (``redaction-test`` with a handler, libraries' loggers below it),
    so the test doesn't depend on what pytest has attached to the root logger."""
    parent = logging.getLogger(f"redaction-test-{secrets.token_hex(4)}")
    parent.setLevel(logging.DEBUG)
    parent.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    parent.addHandler(handler)
    install_redaction(logger=parent)
    try:
        yield parent, stream
    finally:
        parent.removeHandler(handler)


def fresh_secret() -> str:
    return secrets.token_urlsafe(24)


def test_registered_secrets_are_masked_even_inside_lazily_formatted_arguments(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    parent, stream = captured
    key = fresh_secret()
    register_secret(key)

    class Holder:
        def __repr__(self) -> str:  # formatted only when the record is emitted
            return f"Holder(key={key!r})"

    parent.getChild("aiosqlite").debug("executing %r with %s", Holder(), ("media_link_key", key))
    out = stream.getvalue()
    assert key not in out
    assert out.count(MASK) == 2 and "executing Holder(key=" in out


def test_secret_strings_and_bytes_register_too() -> None:
    as_secret, as_bytes = fresh_secret(), fresh_secret()
    register_secret(SecretStr(as_secret))
    register_secret(as_bytes.encode())
    assert redact(f"a {as_secret} b {as_bytes}") == f"a {MASK} b {MASK}"


def test_a_webhook_secret_is_masked_with_and_without_its_prefix() -> None:
    raw = fresh_secret()
    register_secret(f"whsec_{raw}")
    assert redact(f"secret whsec_{raw} / key {raw}") == f"secret {MASK} / key {MASK}"


def test_blank_and_very_short_values_are_not_registered() -> None:
    register_secret("")
    register_secret("   ")
    register_secret(None)
    register_secret("abc")  # masking every "abc" would protect nothing and ruin the log
    assert redact("abc def") == "abc def"


def test_a_secret_containing_another_is_masked_whole() -> None:
    inner = fresh_secret()
    outer = f"{inner}{fresh_secret()}"
    register_secret(inner)
    register_secret(outer)
    assert redact(f"[{outer}]") == f"[{MASK}]"


@pytest.mark.parametrize(
    "line",
    [
        "POST https://discord.com/api/v10/interactions/1234567890/{t}/callback with None has returned 204",
        "PATCH http://127.0.0.1:5555/api/v10/webhooks/987654321/{t}/messages/@original has returned 200",
        "POST /webhooks/987654321/{t}?wait=1 has returned 200",
    ],
)
def test_the_token_segment_of_interaction_urls_is_masked(line: str) -> None:
    token = secrets.token_urlsafe(40)  # whatever its shape, the path says what it is
    out = redact(line.format(t=token))
    assert token not in out
    assert "/987654321/***/" in out or "/1234567890/***/" in out or "/987654321/***?" in out


@pytest.mark.parametrize(
    "template",
    [
        "For Shard ID None: WebSocket Event: {{'t': 'INTERACTION_CREATE', 'd': {{'id': '1', 'token': '{t}', 'type': 2}}}}",
        '{{"op": 0, "d": {{"token": "{t}", "id": "1"}}}}',
        'body="{{\\"token\\": \\"{t}\\"}}"',
        "Job(id=1, interaction_token='{t}', status='queued')",
        "GET /callback?token={t}&state=1",
    ],
)
def test_token_fields_are_masked_in_json_reprs_and_queries(template: str) -> None:
    token = secrets.token_urlsafe(40)
    out = redact(template.format(t=token))
    assert token not in out and MASK in out


def test_interaction_tokens_are_masked_wherever_they_appear() -> None:
    # aiosqlite's parameter dump: no field name next to the value, only its shape gives it away.
    line = (
        "executing functools.partial(<built-in method execute of sqlite3.Connection object>, "
        f"'INSERT INTO jobs(prompt, interaction_token) VALUES (?, ?)', ('a fox', '{INTERACTION_TOKEN}'))"
    )
    out = redact(line)
    assert INTERACTION_TOKEN not in out and "aW50ZXJhY3Rpb246" not in out
    assert "('a fox', '***')" in out


@pytest.mark.parametrize(
    "line",
    [
        "Authorization: Bot {v}",
        "headers={{'Authorization': 'Bearer {v}', 'User-Agent': 'x'}}",
        '{{"authorization": "Bearer {v}"}}',
        "Proxy-Authorization: Basic {v}",
    ],
)
def test_authorization_header_values_are_masked(line: str) -> None:
    value = secrets.token_urlsafe(30)
    out = redact(line.format(v=value))
    assert value not in out and MASK in out
    assert "User-Agent" in out or "'" not in line  # the rest of a dict survives


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("redis://admin:hunter22@cache:6379/0", "redis://***@cache:6379/0"),
        ("fetching https://user:pa%40ss@example.org/x", "fetching https://***@example.org/x"),
        ("git clone https://ghp_abcdef123@github.com/o/r", "git clone https://***@github.com/o/r"),
    ],
)
def test_credentials_in_urls_are_masked(line: str, expected: str) -> None:
    assert redact(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "webhook msg_2f1c: video.completed for video video_abc123",
        "HTTP server on port 8080 (127.0.0.1; /healthz, POST /webhooks/videos)",
        "GET https://api.openai.com/v1/videos/video_123 returned 200",
        "mail me at someone@example.org",
        "token bucket refilled: 5 left",
    ],
)
def test_ordinary_lines_are_left_alone(line: str) -> None:
    assert redact(line) == line


def test_exception_and_stack_text_are_masked(captured: tuple[logging.Logger, io.StringIO]) -> None:
    parent, stream = captured
    key = fresh_secret()
    register_secret(key)
    try:
        raise RuntimeError(f"request to /webhooks/42/{key}x failed with key {key}")
    except RuntimeError:
        parent.getChild("discord.http").exception("request failed", stack_info=True)
    out = stream.getvalue()
    assert "RuntimeError" in out and "Traceback" in out and "Stack (most recent call last)" in out
    assert key not in out


def test_every_handler_sees_the_masked_record(captured: tuple[logging.Logger, io.StringIO]) -> None:
    parent, first = captured
    second = io.StringIO()
    other = logging.StreamHandler(second)
    parent.addHandler(other)
    install_redaction(logger=parent)  # a second call: one filter per handler, no double work
    try:
        assert sum(isinstance(f, RedactingFilter) for f in other.filters) == 1
        assert all(sum(isinstance(f, RedactingFilter) for f in h.filters) == 1 for h in parent.handlers)
        key = fresh_secret()
        register_secret(key)
        parent.getChild("discord.gateway").debug("key=%s", key)
    finally:
        parent.removeHandler(other)
    assert key not in first.getvalue()
    assert key not in second.getvalue() and MASK in second.getvalue()


def test_a_broken_format_string_does_not_leak_its_arguments(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    parent, stream = captured
    key = fresh_secret()
    parent.warning("two placeholders %s %s but one argument", key)
    out = stream.getvalue()
    assert key not in out and "could not be formatted" in out


def test_install_registers_the_given_secrets(captured: tuple[logging.Logger, io.StringIO]) -> None:
    parent, stream = captured
    token, key = fresh_secret(), fresh_secret()
    install_redaction([token, SecretStr(key), None], logger=parent)
    parent.info("token %s, key %s", token, key)
    assert stream.getvalue().strip().endswith(f"token {MASK}, key {MASK}")
