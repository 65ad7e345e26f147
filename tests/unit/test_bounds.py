"""The range table: every option's edges, and the refusals a forged payload gets."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import get_args

import pytest

from bot.domain.bounds import (
    BOUNDS,
    SQLITE_INT_MAX,
    Bound,
    OptionName,
    OutOfRange,
    check,
    check_optional,
    check_policy,
    check_role_override,
)
from bot.domain.credits import GuildPolicy, RoleOverride
from bot.domain.errors import UserError

# The decided range of every entry, written out again so that a change to the table is a
# deliberate change to this list too (and to the README's Security section).
EXPECTED: dict[str, tuple[int, int]] = {
    "setquota.credits": (0, 1_000_000),
    "grant.credits": (1, 1_000_000),
    "settings.allowance": (0, 1_000_000),
    "settings.max_concurrent": (1, 50),
    "settings.cooldown": (0, 86_400),
    "settings.guild_cap": (0, 100_000_000),
    "settings.seconds": (1, 86_400),
    "role.allowance": (0, 1_000_000),
    "role.max_concurrent": (1, 50),
    "video.seconds": (1, 86_400),
    "jobs.page": (1, 10_000),
    "videos.page": (1, 10_000),
    "job": (1, 2**63 - 1),
    "snowflake": (1, 2**63 - 1),
}


def test_every_option_name_has_an_entry_and_the_decided_range() -> None:
    assert set(get_args(OptionName)) == set(BOUNDS) == set(EXPECTED)
    assert {name: (b.low, b.high) for name, b in BOUNDS.items()} == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_both_edges_are_accepted_and_one_beyond_is_refused(name: OptionName) -> None:
    low, high = EXPECTED[name]
    assert check(name, low) == low
    assert check(name, high) == high
    for outside in (low - 1, high + 1):
        with pytest.raises(OutOfRange) as raised:
            check(name, outside)
        error = raised.value
        assert (error.name, error.value, error.low, error.high) == (name, outside, low, high)
        assert f"from {low:,} to {high:,}" in error.message
        assert f"`{BOUNDS[name].option}`" in error.message
        assert "\n" not in error.message


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_accepted_number_fits_an_sqlite_integer(name: OptionName) -> None:
    conn = sqlite3.connect(":memory:")
    high = BOUNDS[name].high
    assert conn.execute("SELECT ?", (check(name, high),)).fetchone() == (high,)


def test_what_the_table_prevents_one_past_a_64_bit_integer_fails_at_the_query() -> None:
    conn = sqlite3.connect(":memory:")
    with pytest.raises(OverflowError):
        conn.execute("SELECT ?", (SQLITE_INT_MAX + 1,))
    with pytest.raises(OutOfRange):
        check("job", SQLITE_INT_MAX + 1)


def test_the_largest_page_offset_and_credit_sums_stay_far_from_overflow() -> None:
    assert (BOUNDS["jobs.page"].high - 1) * 10 < 2**31
    assert (BOUNDS["videos.page"].high - 1) * 10 < 2**31
    # A year of daily top grants on top of the top allowance, for every member of a large server.
    assert (BOUNDS["grant.credits"].high * 365 + BOUNDS["settings.allowance"].high) * 10**6 < SQLITE_INT_MAX


def test_the_three_forged_payloads_of_the_review_are_refused_with_the_range() -> None:
    with pytest.raises(OutOfRange) as grant:
        check("grant.credits", -50)
    assert grant.value.message == (
        "`credits` must be a whole number from 1 to 1,000,000 credits; you gave -50. "
        "A grant only adds credits: to give a member fewer, lower their allowance with `/videomod setquota`."
    )
    with pytest.raises(OutOfRange) as quota:
        check("setquota.credits", 2**63)
    assert quota.value.message.startswith(
        "`credits` must be a whole number from 0 to 1,000,000 credits; you gave 9,223,372,036,854,775,808."
    )
    with pytest.raises(OutOfRange) as concurrent:
        check("settings.max_concurrent", 0)
    assert concurrent.value.message == (
        "`max_concurrent` must be a whole number from 1 to 50 videos; you gave 0. "
        "To stop members making videos, set `allowance` to 0 or limit `channels`."
    )


def test_the_refusal_is_a_user_error_so_the_tree_shows_its_message() -> None:
    with pytest.raises(UserError) as raised:
        check("jobs.page", 0)
    assert raised.value.user_message == "`page` must be a whole number from 1 to 10,000; you gave 0."


@pytest.mark.parametrize("value", [1.0, 2.5, "5", None, True, False, [3], float("nan")])
def test_anything_but_a_whole_number_is_refused_without_being_echoed(value: object) -> None:
    with pytest.raises(OutOfRange) as raised:
        check("grant.credits", value)
    assert raised.value.message.startswith("`credits` must be a whole number from 1 to 1,000,000 credits.")
    assert "you gave" not in raised.value.message


@pytest.mark.parametrize("value", [10**5000, -(10**5000), 2**80], ids=["10**5000", "-10**5000", "2**80"])
def test_a_huge_forged_number_is_not_printed(value: int) -> None:
    with pytest.raises(OutOfRange) as raised:
        check("job", value)
    message = raised.value.message
    assert len(message) < 200
    assert ("far too large" if value > 0 else "far too small") in message


def test_empty_options_pass_through_check_optional() -> None:
    assert check_optional("setquota.credits", None) is None
    assert check_optional("setquota.credits", 0) == 0
    with pytest.raises(OutOfRange):
        check_optional("setquota.credits", -1)


def test_bounds_outside_sqlite_integers_cannot_be_declared() -> None:
    with pytest.raises(ValueError, match="SQLite"):
        Bound("x", 0, 2**63)
    with pytest.raises(ValueError, match="SQLite"):
        Bound("x", 5, 4)


def test_a_policy_is_checked_field_by_field() -> None:
    policy = GuildPolicy(
        allowance=100,
        max_concurrent=3,
        cooldown_seconds=0,
        guild_cap=500,
        allowed_channels=(123456789012345678,),
        allowed_seconds=(4, 8),
        moderator_role_id=987654321098765432,
    )
    assert check_policy(policy) is policy
    assert check_policy(GuildPolicy()) == GuildPolicy()
    bad = {
        "allowance": -1,
        "max_concurrent": 0,
        "cooldown_seconds": 86_401,
        "guild_cap": 100_000_001,
        "allowed_seconds": (4, 0),
        "allowed_channels": (2**63,),
        "moderator_role_id": 0,
    }
    for field, value in bad.items():
        with pytest.raises(OutOfRange):
            check_policy(replace(policy, **{field: value}))


def test_a_role_override_is_checked() -> None:
    assert check_role_override(RoleOverride(5, None, None)) == RoleOverride(5, None, None)
    assert check_role_override(RoleOverride(5, 1_000_000, 50)).allowance == 1_000_000
    for override in (RoleOverride(5, -1, None), RoleOverride(5, None, 0), RoleOverride(2**64, None, None)):
        with pytest.raises(OutOfRange):
            check_role_override(override)
