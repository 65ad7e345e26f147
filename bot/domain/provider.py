"""Pydantic models of the Videos API, lenient in what they accept.

Real servers (LiteLLM, SGLang Diffusion, gateways) drop or null fields, invent statuses and return
sizes outside the spec's enums, so every field except ``id`` is optional and extras are kept.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "canceled", "expired", "deleted"})


class VideoError(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str | None = None
    message: str | None = None


class Video(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: str | None = "video"
    model: str | None = None
    status: str = "queued"
    progress: int | None = None
    created_at: int | None = None
    completed_at: int | None = None
    expires_at: int | None = None
    prompt: str | None = None
    size: str | None = None
    seconds: str | None = None
    remixed_from_video_id: str | None = None
    error: VideoError | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _normalise_status(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else ("queued" if value is None else value)

    @field_validator("progress", mode="before")
    @classmethod
    def _clamp_progress(cls, value: Any) -> Any:
        if isinstance(value, float):
            value = int(value)
        if isinstance(value, int):
            return max(0, min(100, value))
        return None

    @field_validator("seconds", mode="before")
    @classmethod
    def _seconds_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"


class Character(BaseModel):
    """A character made from an uploaded video (``POST /videos/characters``), to cast in prompts."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None = None
    created_at: int | None = None


class VideoList(BaseModel):
    model_config = ConfigDict(extra="allow")

    data: list[Video] = []
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


_CODE_IN_TEXT = re.compile(r"['\"]?code['\"]?\s*[:=]\s*['\"]?([a-z][a-z0-9_]+)", re.IGNORECASE)


def code_from_text(message: str | None) -> str | None:
    """Gateways sometimes wrap an upstream error so its code survives only inside the message text."""
    if not message:
        return None
    match = _CODE_IN_TEXT.search(message)
    if match:
        return match.group(1)
    if "moderation_blocked" in message:
        return "moderation_blocked"
    return None
