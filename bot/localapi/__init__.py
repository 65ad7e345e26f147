"""Local Videos API renderer: an HTTP server that speaks the OpenAI Videos API and renders real MP4s,
so people can try the bot without a video provider (``videobot local-api``, or
``VIDEO_API_BASE_URL=local`` to run it inside the bot).

Modules by role: ``config`` (behaviour), ``protocol`` (wire format, errors, validation), ``jobs``
(jobs and their status over time), ``rendering`` (the MP4, thumbnail and spritesheet files),
``webhooks`` (signed outcome events), ``server`` (aiohttp routes and the extension point).
"""

from __future__ import annotations

from bot.localapi.config import LocalRendererConfig
from bot.localapi.server import LocalRenderer, serve_forever

__all__ = ["LocalRenderer", "LocalRendererConfig", "serve_forever"]
