"""Keeps credentials out of the log, whatever logger a record comes from and at any level.

At ``LOG_LEVEL=DEBUG`` libraries dump what they handle: discord.py logs gateway events (an
``INTERACTION_CREATE`` carries the interaction's ``token``) and request URLs
(``/webhooks/{app}/{token}/...``), aiosqlite logs every statement with its parameters (the stored
interaction token, the media-link key when it is first saved). Rather than chase each logger, one
filter on the root handlers rewrites the *final* text of every record (message with its arguments
applied, exception and stack text) before any handler formats it:

- values registered with :func:`register_secret` (the bot token, the provider key, the webhook
  secret, the media-link key) wherever they appear;
- Discord interaction tokens: the token segment of ``/webhooks/<id>/<token>`` and
  ``/interactions/<id>/<token>`` paths, ``"token": "..."`` fields (JSON or Python reprs), and any
  string shaped like one (they all start with base64 of ``"interaction:"``), which covers the
  token among aiosqlite's parameter dumps where no field name is next to it;
- ``Authorization`` header values;
- credentials in URLs: ``scheme://user:pass@host`` becomes ``scheme://***@host``.

Use: ``install_redaction(secrets)`` once, right after ``logging.basicConfig``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Final

from pydantic import SecretStr

MASK: Final = "***"
# Shorter values are too likely to occur by chance (and a real credential is never this short):
# masking every "abc" would make the log unreadable without protecting anything.
MIN_SECRET_LENGTH: Final = 6

# Discord interaction tokens are base64 of "interaction:<id>:<random>", so they share this prefix.
_INTERACTION_TOKEN_PREFIX: Final = "aW50ZXJhY3Rpb246"
_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # /webhooks/<app id>/<token>... and /interactions/<interaction id>/<token>/callback
    (re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/?#\s'\"]+"), rf"\g<1>{MASK}"),
    # "token": "..." in JSON (also escaped inside a string), 'token': '...' in a dict's repr,
    # token=... in a query string or a dataclass repr; likewise *_token, *secret, password, api key.
    (
        re.compile(
            r"""(?P<key>\\?["']?\b\w*(?:token|secret|password|passwd|api_?key)\\?["']?)"""
            r"""(?P<sep>\s*[:=]\s*)(?P<quote>\\?["']?)(?P<value>[^"'\\\s,;&}\])]+)""",
            re.IGNORECASE,
        ),
        rf"\g<key>\g<sep>\g<quote>{MASK}",
    ),
    (re.compile(re.escape(_INTERACTION_TOKEN_PREFIX) + r"[A-Za-z0-9_\-.=]*"), MASK),
    # Authorization: Bot xxx / 'Authorization': 'Bearer xxx' / "authorization": "..."
    (
        re.compile(
            r"""(?P<key>["']?\b(?:proxy-)?authorization["']?)(?P<sep>\s*[:=]\s*)(?P<quote>["']?)"""
            r"""(?P<value>[^"'\r\n]+)""",
            re.IGNORECASE,
        ),
        rf"\g<key>\g<sep>\g<quote>{MASK}",
    ),
    # scheme://user:pass@host and scheme://token@host
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@'\"]+@"), rf"\g<1>{MASK}@"),
)

_lock = threading.Lock()
_secrets: set[str] = set()
_secrets_pattern: re.Pattern[str] | None = None


def register_secret(value: str | bytes | SecretStr | None) -> None:
    """Mask ``value`` wherever it appears in the log from now on (also in records already being
    emitted by other threads once this returns). Blank or very short values are ignored."""
    global _secrets_pattern
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value is None:
        return
    forms = {value.strip()}
    if value.strip().startswith("whsec_"):
        # The provider dashboard shows "whsec_<base64>"; code handles the base64 part alone.
        forms.add(value.strip().removeprefix("whsec_"))
    forms = {form for form in forms if len(form) >= MIN_SECRET_LENGTH}
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_pattern = re.compile("|".join(re.escape(secret) for secret in ordered))


def redact(text: str) -> str:
    """``text`` with every registered secret and every credential-shaped value masked."""
    pattern = _secrets_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for shape, replacement in _PATTERNS:
        text = shape.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's final text in place; never drops a record.

    The message is rendered (``getMessage``: arguments are often formatted lazily, and a secret
    can be inside an argument's repr) and stored back with no arguments left to apply. Exception
    text is rendered here too and stored in ``exc_text``, which formatters use as-is."""

    def __init__(self) -> None:
        super().__init__()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_videobot_redacted", False):  # several handlers share the record
            return True
        try:
            message = record.getMessage()
        except Exception:
            # A broken format string: let the handler report it as logging does, unredacted
            # arguments included would be a leak, so drop them.
            message = f"{record.msg!s} (log arguments could not be formatted)"
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._videobot_redacted = True
        return True


def install_redaction(
    secrets: Iterable[str | SecretStr | None] = (), *, logger: logging.Logger | None = None
) -> RedactingFilter:
    """Register ``secrets`` and put the filter on every handler of ``logger`` (default: the root
    logger, which every library's records reach). Idempotent: a second call adds secrets only."""
    for secret in secrets:
        register_secret(secret)
    target = logger if logger is not None else logging.getLogger()
    existing = next(
        (f for handler in target.handlers for f in handler.filters if isinstance(f, RedactingFilter)),
        None,
    )
    redacting = existing or RedactingFilter()
    for handler in target.handlers:
        if redacting not in handler.filters:
            handler.addFilter(redacting)
    return redacting
