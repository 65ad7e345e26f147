"""Credits and limits: the policy, as pure functions of the numbers and the clock.

Defaults (a guild changes them with ``/videomod settings``): 60 credits a week per member (fifteen
4-second ``sora-2`` videos, about 6 USD at list price), weeks starting Monday 00:00 UTC, two jobs at
once per member, no cooldown between submissions, no guild cap, every channel, model, size and duration.
"""

from __future__ import annotations

import calendar
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.domain.errors import (
    ChannelNotAllowed,
    CooldownActive,
    NotEnoughCredits,
    OptionNotAllowed,
    RequestRefused,
    ServerBudgetUsed,
    TooManyInProgress,
    UserError,
)

Period = Literal["day", "week", "month"]
LimitSource = Literal["server default", "role", "set by a moderator"]


@dataclass(frozen=True)
class GuildPolicy:
    allowance: int = 60
    period: Period = "week"
    timezone: str = "UTC"
    max_concurrent: int = 2
    cooldown_seconds: int = 0  # off: a member may press Remix or Again right after a delivery
    guild_cap: int | None = None  # credits per period for the whole guild; None = no cap
    allowed_channels: tuple[int, ...] = ()  # empty = all
    allowed_models: tuple[str, ...] = ()  # empty = every model in the catalog
    allowed_sizes: tuple[str, ...] = ()
    allowed_seconds: tuple[int, ...] = ()
    moderator_role_id: int | None = None
    charge_moderation_blocked: bool = False

    def to_json(self) -> dict[str, Any]:
        """Only what differs from the defaults, so new defaults reach guilds that never chose."""
        default = GuildPolicy()
        return {k: v for k, v in asdict(self).items() if getattr(default, k) != v}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GuildPolicy:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known
        }
        return cls(**values)


@dataclass(frozen=True)
class RoleOverride:
    role_id: int
    allowance: int | None = None
    max_concurrent: int | None = None


@dataclass(frozen=True)
class Limits:
    """A member's allowance and concurrency, and where the allowance comes from (for a role:
    ``source_role_id``, which a front end shows as it shows roles)."""

    allowance: int
    max_concurrent: int
    source: LimitSource
    source_role_id: int | None = None


@dataclass(frozen=True)
class Usage:
    """A member's numbers for the current period (``reserved`` is every job not yet settled)."""

    used: int
    reserved: int
    granted: int
    active_jobs: int
    last_submitted_at: float | None
    guild_spent: int = 0  # used + reserved across the guild, for the cap


@dataclass(frozen=True)
class Balance:
    limits: Limits
    usage: Usage
    period_start: float
    resets_at: float

    @property
    def remaining(self) -> int:
        return max(0, self.limits.allowance + self.usage.granted - self.usage.used - self.usage.reserved)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"`{name}` is not a time zone name. Use one like `UTC` or `Europe/Paris`.") from None


def period_bounds(period: Period, timezone: str, now: float) -> tuple[float, float]:
    """Start and end (Unix seconds) of the period containing ``now``, on local boundaries."""
    tz = zone(timezone)
    local = datetime.fromtimestamp(now, tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = midnight, midnight + timedelta(days=1)
    elif period == "week":
        start = midnight - timedelta(days=midnight.weekday())
        end = start + timedelta(days=7)
    else:
        start = midnight.replace(day=1)
        days = calendar.monthrange(start.year, start.month)[1]
        end = start + timedelta(days=days)
    # Rebuild with the zone so a DST change inside the period lands on the right wall-clock time.
    start = start.replace(tzinfo=None).replace(tzinfo=tz)
    end = end.replace(tzinfo=None).replace(tzinfo=tz)
    return start.timestamp(), end.timestamp()


def effective_limits(
    policy: GuildPolicy, roles: list[RoleOverride], member_roles: set[int], member_allowance: int | None
) -> Limits:
    """A moderator's per-member allowance wins; else the most generous of the member's roles and the
    guild default."""
    allowance, concurrency = policy.allowance, policy.max_concurrent
    source: LimitSource = "server default"
    source_role_id: int | None = None
    for role in roles:
        if role.role_id not in member_roles:
            continue
        if role.allowance is not None and role.allowance > allowance:
            allowance, source, source_role_id = role.allowance, "role", role.role_id
        if role.max_concurrent is not None and role.max_concurrent > concurrency:
            concurrency = role.max_concurrent
    if member_allowance is not None:
        allowance, source, source_role_id = member_allowance, "set by a moderator", None
    return Limits(allowance, concurrency, source, source_role_id)


def check_request(
    policy: GuildPolicy,
    balance: Balance,
    *,
    cost: int,
    channel_id: int,
    model: str,
    size: str,
    seconds: int,
    now: float,
) -> RequestRefused | None:
    """Why this request must be refused (the first reason), or None. The refusal holds the numbers
    and its message says what to do next; the caller raises it."""
    if policy.allowed_channels and channel_id not in policy.allowed_channels:
        return ChannelNotAllowed(policy.allowed_channels)
    if policy.allowed_models and model not in policy.allowed_models:
        return OptionNotAllowed("model", model, policy.allowed_models)
    if policy.allowed_sizes and size not in policy.allowed_sizes:
        return OptionNotAllowed("size", size, policy.allowed_sizes)
    if policy.allowed_seconds and seconds not in policy.allowed_seconds:
        return OptionNotAllowed("seconds", seconds, policy.allowed_seconds)
    if cost > balance.remaining:
        return NotEnoughCredits(cost, balance.remaining, balance.resets_at, now=now)
    usage = balance.usage
    if usage.active_jobs >= balance.limits.max_concurrent:
        return TooManyInProgress(usage.active_jobs, balance.limits.max_concurrent)
    if usage.last_submitted_at is not None and policy.cooldown_seconds > 0:
        ready = usage.last_submitted_at + policy.cooldown_seconds
        if now < ready:
            # The next whole second after ``ready``: a time shown to the second must not be early.
            return CooldownActive(int(ready) + 1, now=now)
    if policy.guild_cap is not None and usage.guild_spent + cost > policy.guild_cap:
        return ServerBudgetUsed(policy.period, balance.resets_at, now=now)
    return None


@dataclass(frozen=True)
class ModelUsage:
    """One line of a usage report: a model's jobs in one outcome (status and charge)."""

    model: str
    status: str
    charge_state: str
    jobs: int
    seconds: int
    credits: int
    usd: float


@dataclass(frozen=True)
class MemberUsage:
    """A member's delivered (charged) videos in a usage report."""

    user_id: int
    user_name: str
    jobs: int
    seconds: int
    credits: int
    usd: float


@dataclass(frozen=True)
class UsageReport:
    by_model: tuple[ModelUsage, ...]
    top_members: tuple[MemberUsage, ...]
