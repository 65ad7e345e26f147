"""Named points in the job pipeline where a crash is most damaging, for tests to crash at.

The product only announces ``reached(FailPoint.X)``; nothing happens unless a hook was installed.
The restart tests start the bot through ``tests/launcher.py``, which installs a hook that SIGKILLs
the process at one chosen point, to prove that a crash at exactly the worst moment (the provider
accepted a job whose id is not stored yet; the video is uploaded but not recorded) still ends with
one delivery and one charge. With no hook installed a point costs one ``None`` check.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum


class FailPoint(StrEnum):
    BEFORE_CREATE = "before_create"
    """The job is stored as submitting; the provider has not been asked yet."""
    AFTER_CREATE_BEFORE_STORE = "after_create_before_store"
    """The provider accepted the job; its id is not stored yet."""
    DURING_DOWNLOAD = "during_download"
    """Part of the video is on disk."""
    AFTER_UPLOAD_BEFORE_RECORD = "after_upload_before_record"
    """The video is posted to Discord; the delivery is not recorded yet."""


FailPointHook = Callable[[FailPoint], None]

_hook: FailPointHook | None = None


def install(hook: FailPointHook | None) -> None:
    """Call ``hook`` at every point reached from now on; ``None`` removes it."""
    global _hook
    _hook = hook


def reached(point: FailPoint) -> None:
    if _hook is not None:
        _hook(point)
