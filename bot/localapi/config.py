"""How the local renderer behaves: timings, models, moderation, expiry, webhooks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def _default_models() -> dict[str, list[str]]:
    standard = ["720x1280", "1280x720"]
    return {"sora-2": standard, "sora-2-pro": [*standard, "1024x1792", "1792x1024"]}


@dataclass
class LocalRendererConfig:
    """How the local renderer behaves. Timings are in seconds of ``clock`` time.

    Timings, models, moderation and expiry are read on every request, so a test (or the bench) can
    change them on a running renderer; storage and webhooks are read once, at start.
    """

    generation_seconds: float = 6.0
    """From create to ``completed`` (provided the render has finished by then)."""
    queue_seconds: float = 1.0
    """Time spent ``queued`` before ``in_progress``."""
    fps: int = 24
    api_key: str | None = None
    """When set, every request needs ``Authorization: Bearer <api_key>``."""
    models: dict[str, list[str]] = field(default_factory=_default_models)
    """Model name → sizes it accepts."""
    allowed_seconds: tuple[str, ...] = ("4", "8", "12")
    blocked_words: tuple[str, ...] = ("forbidden",)
    """A prompt containing one of these (case-insensitive) fails with ``moderation_blocked``."""
    poll_after_ms: int | None = 1000
    """Sent as ``openai-poll-after-ms`` on create, remix, retrieve and list responses."""
    asset_ttl_seconds: int = 3600
    """Downloads expire this long after completion."""
    data_dir: Path | None = None
    """Where rendered files go; ``None`` means a temporary directory removed on close."""
    latency_seconds: float = 0.0
    """Added before every response."""
    noise: bool = False
    target_bitrate: int | None = None
    """Passed to ``render_video``: together they produce large files on purpose."""
    clock: Callable[[], float] = time.time
    webhook_url: str | None = None
    webhook_secret: str | None = None
    """With ``webhook_url``, sign and send ``video.completed`` / ``video.failed`` events there."""

    @property
    def webhooks_enabled(self) -> bool:
        return bool(self.webhook_url and self.webhook_secret)
