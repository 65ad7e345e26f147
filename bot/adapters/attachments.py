"""Downloading a member's attachment without letting its URL point the bot anywhere else.

An attachment URL arrives inside an interaction payload, so whoever can forge that payload (or a
proxy in between) chooses where the bot connects. Only Discord's CDN hosts over HTTPS on the
default port are fetched, or exactly one configured origin (scheme, host and port; tests and
self-hosted Discord stand-ins serve attachments from the API base). A host-only match would let
``http://127.0.0.1:<any port>/`` through, so the port is always part of the match. Redirects are
refused rather than followed, since following one would reopen the same door.
"""

from __future__ import annotations

from typing import Final

import aiohttp
from yarl import URL

DISCORD_CDN_HOSTS: Final = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
_CHUNK = 64 * 1024
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class AttachmentRefused(Exception):
    """An attachment was not downloaded. ``user_message`` is one line for the member; ``reason`` is a
    short tag for logs (``origin``, ``redirect``, ``status``, ``too-large``, ``network``). Neither
    contains the URL, whose signed query string is nobody's business."""

    def __init__(self, reason: str, user_message: str) -> None:
        super().__init__(f"{reason}: {user_message}")
        self.reason = reason
        self.user_message = user_message


Origin = tuple[str, str, int]


def _origin(url: URL) -> Origin | None:
    scheme = (url.scheme or "").lower()
    if scheme not in _DEFAULT_PORTS or not url.host:
        return None
    return (scheme, url.host.lower(), url.port or _DEFAULT_PORTS[scheme])


def is_allowed_attachment_url(url: str, *, extra_origin: str | None) -> bool:
    """Whether the bot may download ``url``: HTTPS to a Discord CDN host on port 443, or the same
    scheme, host and port as ``extra_origin`` (any path of it is ignored, so the configured Discord
    API base can be passed as it is). URLs carrying credentials are never allowed."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return False
    if not parsed.absolute or parsed.user is not None or parsed.password is not None:
        return False
    origin = _origin(parsed)
    if origin is None:
        return False
    if origin[0] == "https" and origin[1] in DISCORD_CDN_HOSTS and origin[2] == 443:
        return True
    if extra_origin is None:
        return False
    try:
        configured = _origin(URL(extra_origin))
    except (ValueError, TypeError):
        return False
    return configured is not None and origin == configured


async def fetch_attachment(
    session: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int,
    extra_origin: str | None,
    time_limit: float = 30.0,
) -> bytes:
    """The body at ``url``, at most ``max_bytes`` long.

    Refuses (``AttachmentRefused``) a URL that ``is_allowed_attachment_url`` rejects before any
    connection is made, any redirect, any status other than 200, a declared ``Content-Length`` above
    the cap, and a body that grows past the cap while streaming (the connection is dropped there).
    Network failures and ``time_limit`` (seconds for the whole download) are refusals too.
    """
    if not is_allowed_attachment_url(url, extra_origin=extra_origin):
        raise AttachmentRefused(
            "origin", "That attachment isn't hosted on Discord, so the bot won't download it."
        )
    too_large = AttachmentRefused(
        "too-large",
        f"That attachment is larger than {max_bytes / (1024 * 1024):.1f} MiB; upload a smaller file.",
    )
    try:
        async with session.get(
            url,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=time_limit),
            # A compressed body could expand past the cap before it is counted.
            headers={"Accept-Encoding": "identity"},
        ) as response:
            if 300 <= response.status < 400:
                raise AttachmentRefused(
                    "redirect", "Discord sent that attachment somewhere else; upload it again."
                )
            if response.status != 200:
                raise AttachmentRefused(
                    "status",
                    f"Discord didn't let the bot download that attachment (HTTP {response.status}); "
                    "upload it again.",
                )
            if response.content_length is not None and response.content_length > max_bytes:
                raise too_large
            body = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    # Leaving the context without reading on closes the connection, so the rest of
                    # the body is never received.
                    response.close()
                    raise too_large
            return bytes(body)
    except AttachmentRefused:
        raise
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AttachmentRefused(
            "network", "The bot couldn't download that attachment; upload it again."
        ) from exc
