"""How the local renderer behaves: timings, models, moderation, expiry, limits, webhooks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def _default_models() -> dict[str, list[str]]:
    standard = ["720x1280", "1280x720"]
    pro = [*standard, "1024x1792", "1792x1024"]
    # The contract's VideoModel enum: the two names and their dated snapshots.
    return {
        "sora-2": standard,
        "sora-2-pro": pro,
        "sora-2-2025-10-06": list(standard),
        "sora-2-pro-2025-10-06": list(pro),
        "sora-2-2025-12-08": list(standard),
    }


@dataclass
class LocalRendererConfig:
    """How the local renderer behaves. Timings are in seconds of ``clock`` time.

    Timings, models, moderation, expiry and limits are read on every request, so a test (or the
    bench) can change them on a running renderer; storage, webhooks and the cleanup interval are read
    once, at start.

    The limits keep a renderer that someone else can reach from growing without bound: memory (jobs
    kept, jobs waiting for a render) and disk (rendered files, which are also deleted once expired).
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
    extension_seconds: tuple[str, ...] = ("4", "8", "12", "16", "20")
    """Lengths of a new extension segment (the contract's extension description lists these)."""
    max_video_seconds: int = 120
    """The longest video an extension may produce (source plus segment); longer chains are refused."""
    max_clip_seconds: float = 20.0
    """The longest uploaded video an edit, extension or character accepts."""
    max_clip_pixels: int = 1920 * 1920
    """The largest picture (width x height) of an uploaded video, checked before it is decoded."""
    max_characters: int = 1000
    """Characters kept at once; creating one beyond it forgets the oldest."""
    blocked_words: tuple[str, ...] = ("forbidden",)
    """A prompt containing one of these (case-insensitive) fails with ``moderation_blocked``."""
    poll_after_ms: int | None = 1000
    """Sent as ``openai-poll-after-ms`` on create, remix, retrieve and list responses."""
    asset_ttl_seconds: int = 3600
    """Downloads expire this long after completion; the files are then deleted."""
    max_jobs: int = 2000
    """Jobs kept (listed, retrievable) at once. A create beyond it forgets the oldest finished job."""
    max_active_jobs: int = 256
    """Jobs ``queued`` or ``in_progress`` at once; a create beyond it is refused with a 429."""
    max_stored_bytes: int = 2 * 1024**3
    """Bytes of files on disk (renders and pending reference images). A new file beyond it deletes
    the oldest finished job's files (its downloads then answer ``video_expired``); a render that
    alone exceeds it fails."""
    job_retention_seconds: float = 24 * 3600
    """A finished job is forgotten (404) this long after it was created."""
    cleanup_interval_seconds: float = 60.0
    """How often expired files are deleted and jobs past their retention forgotten."""
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

    def __post_init__(self) -> None:
        for name in ("max_jobs", "max_active_jobs", "max_stored_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_active_jobs > self.max_jobs:
            raise ValueError("max_active_jobs cannot exceed max_jobs: every active job is also kept")
        if self.cleanup_interval_seconds <= 0:
            raise ValueError("cleanup_interval_seconds must be positive")

    @property
    def webhooks_enabled(self) -> bool:
        return bool(self.webhook_url and self.webhook_secret)
