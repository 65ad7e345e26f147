"""The allowed range of every number a member or moderator gives the bot, in one table.

Discord enforces an option's ``min_value``/``max_value`` in its client only: discord.py passes the
number from the interaction payload through unchecked, and a button's ``custom_id`` (job ids,
``/videos`` pages) is whatever the client sends. So the bot checks every number itself, against
this table, before it reaches the credits arithmetic or SQLite (whose integers are signed 64-bit:
a larger Python int raises ``OverflowError`` at the query).

Each entry's decision, in the order of the commands:

- ``setquota.credits`` 0..1,000,000: 0 is a real choice (no videos this period); empty means "back
  to the default" and is not checked here. 1,000,000 credits is about 27 hours of 720p video a
  period, far beyond any server's budget, and small enough that sums of many never approach 2**63.
- ``grant.credits`` 1..1,000,000: a grant only adds. A negative grant is refused rather than taken
  as a deduction (it would make "granted" negative in ``/quota`` and in the audit log); to give a
  member fewer credits, a moderator lowers their allowance with ``/videomod setquota``. 0 grants
  nothing and is refused as a likely slip.
- ``settings.allowance`` and ``role.allowance`` 0..1,000,000: as ``setquota.credits``.
- ``settings.max_concurrent`` and ``role.max_concurrent`` 1..50: 0 would let members reserve
  credits for jobs that can never start; to stop members making videos, set the allowance to 0 or
  limit ``channels``. 50 is far beyond what one provider account runs at once.
- ``settings.cooldown`` 0..86,400 seconds: 0 is no cooldown; a day is the longest that still reads
  as a cooldown rather than a ban.
- ``settings.guild_cap`` 0..100,000,000: 0 means "no cap" (the option says so). 100 times the largest
  allowance, for servers with up to 100 members at the top allowance.
- ``settings.seconds`` (each listed duration) and ``video.seconds`` 1..86,400: a backstop only; the
  catalog decides which durations exist and refuses the rest with its own message. It keeps 0 (which
  ``Catalog.quote`` would take as "the default") and absurd numbers away from the pricing.
- ``jobs.page`` and ``videos.page`` 1..10,000: ten jobs a page, so 100,000 jobs per list; the
  offset ``(page - 1) * 10`` stays tiny. A ``/videos`` page button can be forged, hence the check.
- ``job`` 1..2**63 - 1: a job number (``/videomod cancel``, ``/remix``, every job button's
  ``custom_id``) is an SQLite rowid, so anything larger can't exist and would overflow the query.
- ``snowflake`` 1..2**63 - 1: a channel or role id typed into ``/videomod settings channels``.
  Discord ids are unsigned 64-bit in principle but stay below 2**63 until 2084, and SQLite can hold
  no more.

A value that is not a whole number at all (a float, a string, ``true``: possible in a forged
payload) is refused with the same message, without echoing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypeGuard

from bot.domain.credits import GuildPolicy, RoleOverride
from bot.domain.errors import UserError

SQLITE_INT_MAX = 2**63 - 1
MAX_CREDITS = 1_000_000
MAX_CONCURRENT = 50
MAX_COOLDOWN_SECONDS = 86_400
MAX_GUILD_CAP = 100_000_000
MAX_VIDEO_SECONDS = 86_400
MAX_PAGE = 10_000

OptionName = Literal[
    "setquota.credits",
    "grant.credits",
    "settings.allowance",
    "settings.max_concurrent",
    "settings.cooldown",
    "settings.guild_cap",
    "settings.seconds",
    "role.allowance",
    "role.max_concurrent",
    "video.seconds",
    "jobs.page",
    "videos.page",
    "job",
    "snowflake",
]


@dataclass(frozen=True)
class Bound:
    """The whole numbers ``low``..``high`` (both allowed) for one option."""

    option: str  # as the member sees it, e.g. "credits"
    low: int
    high: int
    unit: str = ""  # after the range: "from 1 to 1,000,000 credits"
    hint: str = ""  # what to do instead, for the values people try

    def __post_init__(self) -> None:
        if not -SQLITE_INT_MAX - 1 <= self.low <= self.high <= SQLITE_INT_MAX:
            raise ValueError(f"bound for {self.option} must lie within SQLite's integers")


BOUNDS: Mapping[OptionName, Bound] = MappingProxyType(
    {
        "setquota.credits": Bound(
            "credits", 0, MAX_CREDITS, "credits", "Leave it empty to use the server or role default."
        ),
        "grant.credits": Bound(
            "credits",
            1,
            MAX_CREDITS,
            "credits",
            "A grant only adds credits: to give a member fewer, lower their allowance with "
            "`/videomod setquota`.",
        ),
        "settings.allowance": Bound("allowance", 0, MAX_CREDITS, "credits"),
        "settings.max_concurrent": Bound(
            "max_concurrent",
            1,
            MAX_CONCURRENT,
            "videos",
            "To stop members making videos, set `allowance` to 0 or limit `channels`.",
        ),
        "settings.cooldown": Bound("cooldown", 0, MAX_COOLDOWN_SECONDS, "seconds", "0 means no cooldown."),
        "settings.guild_cap": Bound("guild_cap", 0, MAX_GUILD_CAP, "credits", "0 means no cap."),
        "settings.seconds": Bound("seconds", 1, MAX_VIDEO_SECONDS, "seconds"),
        "role.allowance": Bound("allowance", 0, MAX_CREDITS, "credits"),
        "role.max_concurrent": Bound(
            "max_concurrent",
            1,
            MAX_CONCURRENT,
            "videos",
            "Leave it empty for no override; to stop members making videos, set `allowance` to 0.",
        ),
        "video.seconds": Bound("seconds", 1, MAX_VIDEO_SECONDS, "seconds"),
        "jobs.page": Bound("page", 1, MAX_PAGE),
        "videos.page": Bound("page", 1, MAX_PAGE),
        "job": Bound("job", 1, SQLITE_INT_MAX, "", "`/videos` and `/videomod jobs` list the job numbers."),
        "snowflake": Bound("id", 1, SQLITE_INT_MAX, "", "Name channels and roles as mentions or ids."),
    }
)

# Longer numbers are not echoed back: a forged one can have thousands of digits, and str() of an int
# beyond 4,300 digits raises ValueError.
_SHOWN_BITS = 70  # about 21 digits


class OutOfRange(UserError):
    """A number outside its option's range, or not a whole number at all. The message names the
    option and the allowed range."""

    def __init__(self, name: OptionName, value: object, bound: Bound) -> None:
        self.name = name
        self.option = bound.option
        self.value = value
        self.low = bound.low
        self.high = bound.high
        unit = f" {bound.unit}" if bound.unit else ""
        message = f"`{bound.option}` must be a whole number from {bound.low:,} to {bound.high:,}{unit}"
        if _is_whole(value):
            message += f"; you gave {_shown(value)}."
        else:
            message += "."
        if bound.hint:
            message += " " + bound.hint
        super().__init__(message)
        self.message = message


def check(name: OptionName, value: object) -> int:
    """``value`` if it is a whole number within ``name``'s range, else ``OutOfRange``."""
    bound = BOUNDS[name]
    if not _is_whole(value) or not bound.low <= value <= bound.high:
        raise OutOfRange(name, value, bound)
    return value


def check_optional(name: OptionName, value: object) -> int | None:
    """As ``check``, with ``None`` (an option left empty) passed through."""
    return None if value is None else check(name, value)


def check_policy(policy: GuildPolicy) -> GuildPolicy:
    """``policy`` if every number in it is within range (before it is saved: ``replace`` checks
    nothing), else ``OutOfRange`` for the first that isn't. ``guild_cap`` is ``None`` for no cap;
    the 0 of the option is turned into ``None`` before this."""
    check("settings.allowance", policy.allowance)
    check("settings.max_concurrent", policy.max_concurrent)
    check("settings.cooldown", policy.cooldown_seconds)
    check_optional("settings.guild_cap", policy.guild_cap)
    for seconds in policy.allowed_seconds:
        check("settings.seconds", seconds)
    for channel_id in policy.allowed_channels:
        check("snowflake", channel_id)
    check_optional("snowflake", policy.moderator_role_id)
    return policy


def check_role_override(override: RoleOverride) -> RoleOverride:
    """``override`` if its numbers are within range, else ``OutOfRange``."""
    check("snowflake", override.role_id)
    check_optional("role.allowance", override.allowance)
    check_optional("role.max_concurrent", override.max_concurrent)
    return override


def _is_whole(value: object) -> TypeGuard[int]:
    # bool is an int subclass, but `true` is no number of credits.
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: int) -> str:
    if value.bit_length() > _SHOWN_BITS:
        return "a number far too " + ("large" if value > 0 else "small")
    return f"{value:,}"
