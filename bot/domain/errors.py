"""One error hierarchy. Each user-facing error carries the message the member sees."""

from __future__ import annotations


class VideobotError(Exception):
    """Base of every error this package raises on purpose."""


class UserError(VideobotError):
    """A refusal or failure the member should read: the message says why and what to do next."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class CatalogError(VideobotError):
    """The model catalog file is wrong; the message names the file and the entry."""


class ConfigError(VideobotError):
    """The configuration is incomplete or inconsistent; the message says which variable to set."""


class UndeliverableError(VideobotError):
    """A finished video cannot be posted anywhere (too large, channel gone, no permission).

    The message is shown to the member (where possible) and the job is refunded.
    """
