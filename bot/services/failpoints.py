"""Crash points for the restart tests.

``VIDEOBOT_CRASH_AT=<name>`` makes the process SIGKILL itself when it reaches that point, so a test
can prove that a crash at exactly the worst moment (the provider accepted a job whose id is not
stored yet; the video is uploaded but not recorded) still ends with one delivery and one charge.
Unset (always, outside tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

ENV = "VIDEOBOT_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        log.warning("crash point %r reached: killing the process", name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
