from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.discord.cogs.credits import limits_source
from bot.discord.errors import describe
from bot.domain.credits import (
    Balance,
    GuildPolicy,
    Limits,
    RoleOverride,
    Usage,
    check_request,
    effective_limits,
    period_bounds,
)
from bot.domain.errors import UserError

UTC = ZoneInfo("UTC")


def ts(text: str, tz: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("day", "2026-11-25 13:05", "2026-11-25 00:00", "2026-11-26 00:00"),
        ("week", "2026-11-25 13:05", "2026-11-23 00:00", "2026-11-30 00:00"),  # Wednesday → Monday
        ("month", "2026-11-25 13:05", "2026-11-01 00:00", "2026-12-01 00:00"),
        ("month", "2026-12-31 23:59", "2026-12-01 00:00", "2027-01-01 00:00"),
        ("day", "2026-11-26 00:00", "2026-11-26 00:00", "2026-11-27 00:00"),  # exactly on the boundary
    ],
)
def test_period_bounds_utc(period: str, now: str, start: str, end: str) -> None:
    assert period_bounds(period, "UTC", ts(now)) == (ts(start), ts(end))  # type: ignore[arg-type]


def test_period_bounds_follow_the_guild_time_zone_across_dst() -> None:
    # Paris leaves summer time on 2026-10-25: that day is 25 hours long.
    start, end = period_bounds("day", "Europe/Paris", ts("2026-10-25 12:00", "Europe/Paris"))
    assert start == ts("2026-10-25 00:00", "Europe/Paris")
    assert end - start == 25 * 3600


def test_unknown_time_zone_is_explained() -> None:
    with pytest.raises(UserError, match="not a time zone"):
        period_bounds("day", "Mars/Olympus", 0)


def test_most_generous_role_wins_and_member_setting_beats_roles() -> None:
    policy = GuildPolicy(allowance=60, max_concurrent=2)
    roles = [
        RoleOverride(1, allowance=100),
        RoleOverride(2, allowance=200, max_concurrent=1),
        RoleOverride(3, 999, 9),
    ]
    limits = effective_limits(policy, roles, {1, 2}, None)
    assert (limits.allowance, limits.max_concurrent) == (200, 2)
    assert (limits.source, limits.source_role_id) == ("role", 2)
    assert limits_source(limits) == "role <@&2>"
    assert effective_limits(policy, roles, {1, 2}, 10).allowance == 10
    assert effective_limits(policy, roles, set(), None) == Limits(60, 2, "server default")


def balance(
    allowance: int = 60, used: int = 0, reserved: int = 0, granted: int = 0, **usage: object
) -> Balance:
    return Balance(
        limits=Limits(allowance, 2, "server default"),
        usage=Usage(
            used=used,
            reserved=reserved,
            granted=granted,
            active_jobs=int(usage.get("active_jobs", 0)),  # type: ignore[call-overload]
            last_submitted_at=usage.get("last_submitted_at"),  # type: ignore[arg-type]
            guild_spent=int(usage.get("guild_spent", 0)),  # type: ignore[call-overload]
        ),
        period_start=0,
        resets_at=1_800_000_000,
    )


def refuse(
    policy: GuildPolicy, bal: Balance, cost: int = 4, now: float = 1000, **request: object
) -> str | None:
    refusal = check_request(
        policy,
        bal,
        cost=cost,
        channel_id=int(request.get("channel_id", 5)),  # type: ignore[call-overload]
        model=str(request.get("model", "sora-2")),
        size=str(request.get("size", "720x1280")),
        seconds=int(request.get("seconds", 4)),  # type: ignore[call-overload]
        now=now,
    )
    # What the member reads on Discord (the domain's refusal holds the numbers, see test_refusals).
    return describe(refusal) if refusal else None


def test_allowance_counts_used_reserved_and_grants() -> None:
    policy = GuildPolicy()
    assert refuse(policy, balance(60, used=50, reserved=6), cost=4) is None
    message = refuse(policy, balance(60, used=50, reserved=8), cost=4)
    assert message == (
        "This needs 4 credits; you have 2 left. Your credits reset <t:1800000000:R>. "
        "Try a shorter or smaller video, or ask a moderator."
    )
    assert refuse(policy, balance(60, used=50, reserved=8, granted=2), cost=4) is None
    assert balance(10, used=30).remaining == 0  # never negative


def test_concurrency_cap_and_cooldown() -> None:
    policy = GuildPolicy(max_concurrent=2, cooldown_seconds=30)
    assert "already have 2 videos in progress" in (refuse(policy, balance(active_jobs=2)) or "")
    assert refuse(policy, balance(last_submitted_at=990.0), now=1000) == (
        "Slow down a little: you can request another video <t:1021:R>."
    )
    assert refuse(policy, balance(last_submitted_at=970.0), now=1000) is None


def test_guild_cap() -> None:
    policy = GuildPolicy(guild_cap=100)
    assert refuse(policy, balance(guild_spent=96), cost=4) is None
    assert "used its video budget for this week" in (refuse(policy, balance(guild_spent=97), cost=4) or "")


def test_allow_lists() -> None:
    policy = GuildPolicy(
        allowed_channels=(7, 8), allowed_models=("sora-2",), allowed_sizes=("720x1280",), allowed_seconds=(4,)
    )
    assert refuse(policy, balance(), channel_id=5) == "Videos can't be made in this channel. Use <#7>, <#8>."
    assert refuse(policy, balance(), channel_id=7) is None
    assert "doesn't allow `sora-2-pro`" in (refuse(policy, balance(), channel_id=7, model="sora-2-pro") or "")
    assert "doesn't allow 1280x720" in (refuse(policy, balance(), channel_id=7, size="1280x720") or "")
    assert "doesn't allow 8-second" in (refuse(policy, balance(), channel_id=7, seconds=8) or "")


def test_policy_json_keeps_only_changes() -> None:
    policy = GuildPolicy(allowance=10, allowed_channels=(1, 2))
    assert policy.to_json() == {"allowance": 10, "allowed_channels": (1, 2)}
    assert GuildPolicy.from_json({"allowance": 10, "allowed_channels": [1, 2], "unknown": 1}) == policy
