"""Starts the bot like ``python -m bot``, with a crash point armed: ``python -m tests.launcher run``.

``VIDEOBOT_CRASH_AT=<point>`` (a ``FailPoint`` value) makes the process SIGKILL itself the first time
it reaches that point. Only the restart tests need this, so only they start the bot through here;
the product never reads the variable.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from bot.cli import main
from bot.services import failpoints
from bot.services.failpoints import FailPoint

ENV = "VIDEOBOT_CRASH_AT"

log = logging.getLogger("tests.launcher")


def kill_at(target: FailPoint) -> failpoints.FailPointHook:
    def hook(point: FailPoint) -> None:
        if point is target:
            log.warning("crash point %r reached: killing the process", point.value)
            for handler in logging.getLogger().handlers:
                handler.flush()
            # SIGKILL rather than os._exit: the tests check the process died the way a real crash
            # (OOM killer, power loss) ends it, with no cleanup of any kind.
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def arm_from_environment() -> None:
    name = os.environ.get(ENV)
    if not name:
        return
    try:
        target = FailPoint(name)
    except ValueError:
        known = ", ".join(point.value for point in FailPoint)
        raise SystemExit(f"error: {ENV}={name!r} is not a crash point; known: {known}") from None
    failpoints.install(kill_at(target))


if __name__ == "__main__":
    arm_from_environment()
    raise SystemExit(main(sys.argv[1:]))
