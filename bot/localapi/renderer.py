"""The import path ``bot.cli`` has always used; the renderer lives in ``bot.localapi.server``."""

from __future__ import annotations

from bot.localapi.config import LocalRendererConfig
from bot.localapi.server import LocalRenderer, serve_forever

__all__ = ["LocalRenderer", "LocalRendererConfig", "serve_forever"]
