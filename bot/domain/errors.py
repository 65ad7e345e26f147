"""One error hierarchy. Each user-facing error carries structured data (what the Discord layer needs
to word it) and a plain-text message (``str(error)``, ``user_message``) without Discord markup."""

from __future__ import annotations


class VideobotError(Exception):
    """Base of every error this package raises on purpose."""


class UserError(VideobotError):
    """A refusal or failure the member should read: the message says why and what to do next."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class JobNotFound(UserError):
    def __init__(self, job_id: int, hint: str = "") -> None:
        super().__init__(f"There is no video #{job_id} in this server.{hint}")
        self.job_id = job_id


class JobNotCancellable(UserError):
    """The job is past the point where cancelling means anything."""

    def __init__(self, job_id: int, status: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status


class JobAlreadyFinished(JobNotCancellable):
    """The provider had already made the video when Cancel was pressed: it is posted and charged
    instead (``JobLifecycle.cancel``'s rule: Cancel never refunds finished work)."""


class CancelUnverified(JobNotCancellable):
    """The provider could not be asked whether it has finished the video, so the job was not
    cancelled (a refund for work it may have finished would be the operator's loss)."""


class JobActionRefused(UserError):
    """A member may not use a job's button (not theirs, or the job is in the wrong state)."""

    def __init__(self, job_id: int, action: str, message: str, *, owner_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.action = action
        self.owner_id = owner_id


class CatalogError(VideobotError):
    """The model catalog file is wrong; the message names the file and the entry."""


class ConfigError(VideobotError):
    """The configuration is incomplete or inconsistent; the message says which variable to set."""


class UndeliverableError(VideobotError):
    """A finished video cannot be posted anywhere (too large, channel gone, no permission).

    ``reason`` is shown to the member (where possible) and the job is refunded.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
