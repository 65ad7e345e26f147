"""A clock the test moves by hand, for the local renderer's job timeline (``LocalRendererConfig.clock``).

The renderer derives every status from its clock, so with this clock a video stays where it is
(``queued``) until the test says the provider has finished it: "the provider completed it, the bot
hasn't looked yet" is then a state to set up, not a moment to catch.
"""

from __future__ import annotations

import time


class HandClock:
    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
