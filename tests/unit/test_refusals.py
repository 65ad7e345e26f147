"""The one error model: the domain's refusals hold their numbers and plain words; the Discord layer
writes the same words with timestamps and channel mentions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.adapters.media import ImageError, MediaError, sniff_image
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
)
from bot.domain.errors import (
    ChannelNotAllowed,
    CooldownActive,
    NotEnoughCredits,
    OptionNotAllowed,
    PlainText,
    RequestRefused,
    ServerBudgetUsed,
    TooManyInProgress,
    UserError,
    VideobotError,
)

NOW = 1_799_740_800.0  # 2027-01-12 08:00 UTC
RESETS = NOW + 3 * 86_400  # 2027-01-15 08:00 UTC
DISCORD_MARKUP = re.compile(r"<(t:|#|@|/)")


def balance(*, remaining: int = 60, active_jobs: int = 0, last_submitted_at: float | None = None) -> Balance:
    usage = Usage(60 - remaining, 0, 0, active_jobs, last_submitted_at, guild_spent=0)
    return Balance(Limits(60, 2, "server default"), usage, period_start=NOW - 86_400, resets_at=RESETS)


def refusal(policy: GuildPolicy, bal: Balance, **request: object) -> RequestRefused:
    found = check_request(
        policy,
        bal,
        cost=int(request.get("cost", 4)),  # type: ignore[call-overload]
        channel_id=int(request.get("channel_id", 5)),  # type: ignore[call-overload]
        model=str(request.get("model", "sora-2")),
        size=str(request.get("size", "720x1280")),
        seconds=int(request.get("seconds", 4)),  # type: ignore[call-overload]
        now=NOW,
    )
    assert found is not None
    return found


CASES = [
    pytest.param(
        refusal(GuildPolicy(allowed_channels=(7, 8)), balance()),
        ChannelNotAllowed,
        {"allowed_channel_ids": (7, 8)},
        "Videos can't be made in this channel. Use channel 7, channel 8.",
        "Videos can't be made in this channel. Use <#7>, <#8>.",
        id="channel",
    ),
    pytest.param(
        refusal(GuildPolicy(allowed_models=("sora-2",)), balance(), model="sora-2-pro"),
        OptionNotAllowed,
        {"kind": "model", "value": "sora-2-pro", "allowed": ("sora-2",)},
        "This server doesn't allow `sora-2-pro`. Allowed: sora-2.",
        "This server doesn't allow `sora-2-pro`. Allowed: sora-2.",
        id="model",
    ),
    pytest.param(
        refusal(GuildPolicy(allowed_sizes=("720x1280", "1280x720")), balance(), size="1024x1792"),
        OptionNotAllowed,
        {"kind": "size", "value": "1024x1792", "allowed": ("720x1280", "1280x720")},
        "This server doesn't allow 1024x1792 videos. Allowed: 720x1280, 1280x720.",
        "This server doesn't allow 1024x1792 videos. Allowed: 720x1280, 1280x720.",
        id="size",
    ),
    pytest.param(
        refusal(GuildPolicy(allowed_seconds=(4, 8)), balance(), seconds=12),
        OptionNotAllowed,
        {"kind": "seconds", "value": 12, "allowed": (4, 8)},
        "This server doesn't allow 12-second videos. Allowed: 4, 8 seconds.",
        "This server doesn't allow 12-second videos. Allowed: 4, 8 seconds.",
        id="seconds",
    ),
    pytest.param(
        refusal(GuildPolicy(), balance(remaining=2)),
        NotEnoughCredits,
        {"needed": 4, "remaining": 2, "resets_at": RESETS},
        "This needs 4 credits; you have 2 left. Your credits reset in 3 days (2027-01-15 08:00 UTC). "
        "Try a shorter or smaller video, or ask a moderator.",
        f"This needs 4 credits; you have 2 left. Your credits reset <t:{int(RESETS)}:R>. "
        "Try a shorter or smaller video, or ask a moderator.",
        id="credits",
    ),
    pytest.param(
        refusal(GuildPolicy(), balance(active_jobs=2)),
        TooManyInProgress,
        {"active": 2, "limit": 2},
        "You already have 2 videos in progress (the limit is 2). Wait for one to finish, or cancel one.",
        "You already have 2 videos in progress (the limit is 2). Wait for one to finish, or cancel one.",
        id="concurrency",
    ),
    pytest.param(
        refusal(GuildPolicy(cooldown_seconds=30), balance(last_submitted_at=NOW - 9.5)),
        CooldownActive,
        {"ready_at": int(NOW) + 21},
        "Slow down a little: you can request another video in 21 seconds (2027-01-12 08:00 UTC).",
        f"Slow down a little: you can request another video <t:{int(NOW) + 21}:R>.",
        id="cooldown",
    ),
    pytest.param(
        refusal(GuildPolicy(guild_cap=4, period="month"), balance(), cost=8),
        ServerBudgetUsed,
        {"period": "month", "resets_at": RESETS},
        "This server has used its video budget for this month. It resets in 3 days (2027-01-15 08:00 UTC).",
        f"This server has used its video budget for this month. It resets <t:{int(RESETS)}:R>.",
        id="guild cap",
    ),
]


@pytest.mark.parametrize(("error", "kind", "data", "plain", "discord"), CASES)
def test_each_refusal_holds_its_numbers_in_plain_words_and_discord_writes_the_markup(
    error: RequestRefused, kind: type[RequestRefused], data: dict[str, object], plain: str, discord: str
) -> None:
    assert type(error) is kind and isinstance(error, UserError)
    assert {name: getattr(error, name) for name in data} == data
    assert error.user_message == str(error) == plain
    assert not DISCORD_MARKUP.search(error.user_message)
    assert describe(error) == discord


def test_plain_times_count_from_the_moment_the_refusal_was_made() -> None:
    plain = PlainText(NOW)
    assert plain.time(NOW + 1) == "in 1 second (2027-01-12 08:00 UTC)"
    assert plain.time(NOW + 45 * 60) == "in 45 minutes (2027-01-12 08:45 UTC)"
    assert plain.time(NOW + 5 * 3600) == "in 5 hours (2027-01-12 13:00 UTC)"
    assert plain.time(NOW + 86_400) == "in 1 day (2027-01-13 08:00 UTC)"
    assert plain.time(NOW - 5) == "now (2027-01-12 07:59 UTC)"


def test_a_refusal_made_later_says_less_time_is_left() -> None:
    later = NotEnoughCredits(4, 2, RESETS, now=RESETS - 2 * 3600)
    assert "Your credits reset in 2 hours (2027-01-15 08:00 UTC)." in later.user_message
    assert describe(later) == describe(NotEnoughCredits(4, 2, RESETS, now=NOW))  # Discord counts itself


def test_where_the_allowance_comes_from_is_data_and_discord_mentions_the_role() -> None:
    policy = GuildPolicy(allowance=60)
    by_role = effective_limits(policy, [RoleOverride(77, allowance=90)], {77}, None)
    assert (by_role.source, by_role.source_role_id, limits_source(by_role)) == ("role", 77, "role <@&77>")
    by_moderator = effective_limits(policy, [RoleOverride(77, allowance=90)], {77}, 10)
    assert (by_moderator.source, by_moderator.source_role_id) == ("set by a moderator", None)
    assert limits_source(by_moderator) == "set by a moderator"
    assert limits_source(effective_limits(policy, [], set(), None)) == "server default"


def test_an_image_refusal_is_a_user_error_and_a_reencode_failure_is_not() -> None:
    with pytest.raises(UserError) as refused:
        sniff_image(b"")
    assert isinstance(refused.value, ImageError)
    assert (
        describe(refused.value)
        == refused.value.user_message
        == "That file is empty; upload a JPEG, PNG or WebP image."
    )
    failure = MediaError("The video could not be made smaller than 8.0 MiB (best attempt 9.1 MiB).")
    assert isinstance(failure, VideobotError) and not isinstance(failure, UserError)
    assert failure.user_message == str(failure)


def test_the_core_writes_no_discord_markup() -> None:
    root = Path(__file__).resolve().parents[2] / "bot"
    found = [
        f"{path.relative_to(root)}:{number}: {line.strip()}"
        for package in ("domain", "services")
        for path in sorted((root / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if DISCORD_MARKUP.search(line)
    ]
    assert found == []
