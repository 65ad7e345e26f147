"""One error hierarchy. Each user-facing error carries structured data (what the Discord layer needs
to word it) and a plain-text message (``str(error)``, ``user_message``) without Discord markup."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol


class VideobotError(Exception):
    """Base of every error this package raises on purpose."""


class UserError(VideobotError):
    """A refusal or failure the member should read: the message says why and what to do next."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message

    def render(self, markup: Markup) -> str:
        """The message with times and channels written the way ``markup``'s front end shows them
        (an error holding neither has just its ``user_message``)."""
        return self.user_message


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


# -- request refusals: the server's limits say no -------------------------------------------------


class Markup(Protocol):
    """How a front end writes the parts of a message it can show better than plain words."""

    def time(self, at: float) -> str:
        """A moment (Unix seconds), relative to now: it completes "resets …" ("in 3 days")."""
        ...

    def channels(self, ids: Sequence[int]) -> str:
        """Channels, listed: it completes "Use …"."""
        ...


class PlainText:
    """``Markup`` for front ends with no markup (the terminal, logs): times are relative to the
    ``now`` the message was made at, with the UTC moment beside them, since plain text can't count
    down the way a Discord timestamp does."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self, at: float) -> str:
        stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        left = at - self.now
        if left <= 0:
            return f"now ({stamp})"
        seconds = math.ceil(left)
        for size, unit in ((86_400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
            if seconds >= size:
                count = round(seconds / size)
                return f"in {count} {unit}{'' if count == 1 else 's'} ({stamp})"
        raise AssertionError("unreachable: seconds >= 1")  # pragma: no cover

    def channels(self, ids: Sequence[int]) -> str:
        return ", ".join(f"channel {channel_id}" for channel_id in ids)


class RequestRefused(UserError):
    """A video request the server's limits refuse (``check_request``); nothing was reserved.

    Each subclass holds the numbers its message is made of; ``user_message`` is the plain-text
    wording and ``render`` the same words with a front end's times and channel mentions."""

    def __init__(self, *, now: float = 0.0) -> None:
        # Only the refusals that name a time read ``now``: the plain text words it relative to then.
        super().__init__(self.render(PlainText(now)))


class ChannelNotAllowed(RequestRefused):
    def __init__(self, allowed_channel_ids: Sequence[int]) -> None:
        self.allowed_channel_ids = tuple(allowed_channel_ids)
        super().__init__()

    def render(self, markup: Markup) -> str:
        return f"Videos can't be made in this channel. Use {markup.channels(self.allowed_channel_ids)}."


OptionKind = Literal["model", "size", "seconds"]


class OptionNotAllowed(RequestRefused):
    """The server allows only some models, sizes or durations, and this request's is not one."""

    def __init__(self, kind: OptionKind, value: str | int, allowed: Sequence[str | int]) -> None:
        self.kind: OptionKind = kind
        self.value = value
        self.allowed = tuple(allowed)
        super().__init__()

    def render(self, markup: Markup) -> str:
        allowed = ", ".join(str(a) for a in self.allowed)
        if self.kind == "model":
            return f"This server doesn't allow `{self.value}`. Allowed: {allowed}."
        if self.kind == "size":
            return f"This server doesn't allow {self.value} videos. Allowed: {allowed}."
        return f"This server doesn't allow {self.value}-second videos. Allowed: {allowed} seconds."


class NotEnoughCredits(RequestRefused):
    def __init__(self, needed: int, remaining: int, resets_at: float, *, now: float) -> None:
        self.needed = needed
        self.remaining = remaining
        self.resets_at = resets_at
        super().__init__(now=now)

    def render(self, markup: Markup) -> str:
        return (
            f"This needs {self.needed} credits; you have {self.remaining} left. "
            f"Your credits reset {markup.time(self.resets_at)}. "
            "Try a shorter or smaller video, or ask a moderator."
        )


class TooManyInProgress(RequestRefused):
    def __init__(self, active: int, limit: int) -> None:
        self.active = active
        self.limit = limit
        super().__init__()

    def render(self, markup: Markup) -> str:
        videos = "video" if self.active == 1 else "videos"
        return (
            f"You already have {self.active} {videos} in progress (the limit is {self.limit}). "
            "Wait for one to finish, or cancel one."
        )


class CooldownActive(RequestRefused):
    """``ready_at`` is a whole second by which the member's cooldown is surely over."""

    def __init__(self, ready_at: int, *, now: float) -> None:
        self.ready_at = ready_at
        super().__init__(now=now)

    def render(self, markup: Markup) -> str:
        return f"Slow down a little: you can request another video {markup.time(self.ready_at)}."


class ServerBudgetUsed(RequestRefused):
    """The guild's credit cap for the period is spent (``period``: day, week or month)."""

    def __init__(self, period: str, resets_at: float, *, now: float) -> None:
        self.period = period
        self.resets_at = resets_at
        super().__init__(now=now)

    def render(self, markup: Markup) -> str:
        return (
            f"This server has used its video budget for this {self.period}. "
            f"It resets {markup.time(self.resets_at)}."
        )
