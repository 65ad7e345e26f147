"""CreditsService against a real SQLite file: every moderator change, what it answers, and the
audit record it leaves; settings parsing and its refusals; the job list, the usage report and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest

from bot.adapters.sql.credits import SqlCreditsRepository
from bot.adapters.sql.history import SqlHistoryRepository
from bot.adapters.sql.store import SqlStore
from bot.domain.catalog import default_catalog
from bot.domain.credits import GuildPolicy, RoleOverride, period_bounds
from bot.domain.errors import UserError
from bot.domain.jobs import ChargeState, JobRequest, JobStatus
from bot.services.credits import CreditsService, SettingsChange
from tests.backends import Backend

GUILD, MOD, ANA, BO = 100, 1, 200, 201
MONDAY_NOON = 1_795_780_800.0  # 2026-11-30 12:00 UTC, a Monday
CHANNEL_A, CHANNEL_B = 123_456_789_012_345_678, 223_456_789_012_345_678


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    store: SqlStore
    credits: CreditsService
    repo: SqlCreditsRepository
    clock: Clock

    async def add_job(
        self, user_id: int, status: JobStatus, charge: ChargeState, *, cost: int = 4, name: str = "ana"
    ) -> int:
        request = JobRequest(
            guild_id=GUILD,
            channel_id=5,
            user_id=user_id,
            user_name=name,
            prompt=f"clip by {user_id}",
            model="sora-2",
            size="720x1280",
            seconds=cost,
            cost=cost,
            usd=cost / 10,
        )
        job_id = await self.store.insert_job(request)
        await self.store.update_job(job_id, status=status, charge_state=charge)
        return job_id

    async def audit(self) -> list[tuple[str, int | None, int | None, dict[str, object]]]:
        entries = await self.repo.audit_entries(GUILD)
        return [(e["action"], e["actor_id"], e["target_user_id"], e["details"]) for e in reversed(entries)]


@pytest.fixture
async def world(backend: Backend) -> AsyncIterator[World]:
    clock = Clock(MONDAY_NOON)
    async with backend.open(clock=clock) as store:
        repo = SqlCreditsRepository(store)
        service = CreditsService(repo, SqlHistoryRepository(store), catalog=default_catalog(), clock=clock)
        yield World(store, service, repo, clock)


async def test_setquota_grant_and_reset_answer_the_new_balance_and_are_audited(world: World) -> None:
    credits = world.credits
    await world.add_job(ANA, JobStatus.COMPLETED, ChargeState.CHARGED, cost=8)
    balance = await credits.set_allowance(GUILD, actor_id=MOD, user_id=ANA, roles=[], credits=10)
    assert (balance.limits.allowance, balance.limits.source, balance.remaining) == (
        10,
        "set by a moderator",
        2,
    )
    balance = await credits.grant(GUILD, actor_id=MOD, user_id=ANA, roles=[], credits=5)
    assert (balance.usage.granted, balance.remaining) == (5, 7)
    world.clock.now += 1  # the reset counts from now on
    balance = await credits.reset_usage(GUILD, actor_id=MOD, user_id=ANA, roles=[])
    assert (balance.usage.used, balance.usage.granted, balance.remaining) == (0, 0, 10)
    balance = await credits.set_allowance(GUILD, actor_id=MOD, user_id=ANA, roles=[], credits=None)
    assert (balance.limits.allowance, balance.limits.source) == (60, "server default")
    assert await world.audit() == [
        ("quota.set", MOD, ANA, {"credits": 10}),
        ("quota.grant", MOD, ANA, {"credits": 5}),
        ("quota.reset", MOD, ANA, {}),
        ("quota.set", MOD, ANA, {"credits": None}),
    ]
    assert (await credits.balance(GUILD, BO))[0].remaining == 60  # nobody else was touched


async def test_settings_parse_apply_and_audit_what_changed(world: World) -> None:
    credits = world.credits
    shown = await credits.update_settings(GUILD, actor_id=MOD, change=SettingsChange())
    assert (shown.policy, shown.roles, shown.changed) == (GuildPolicy(), [], False)
    assert await world.audit() == []  # looking changes nothing

    change = SettingsChange(
        allowance=30,
        period="day",
        timezone="Europe/Paris",
        guild_cap=0,
        moderator_role_id=77,
        channels=f"<#{CHANNEL_A}>, {CHANNEL_B}",
        models="sora-2",
        sizes="720x1280",
        seconds="4, 8",
    )
    result = await credits.update_settings(GUILD, actor_id=MOD, change=change)
    expected = GuildPolicy(
        allowance=30,
        period="day",
        timezone="Europe/Paris",
        guild_cap=None,
        moderator_role_id=77,
        allowed_channels=(CHANNEL_A, CHANNEL_B),
        allowed_models=("sora-2",),
        allowed_sizes=("720x1280",),
        allowed_seconds=(4, 8),
    )
    assert (result.policy, result.changed) == (expected, True)
    assert await credits.policy(GUILD) == expected
    assert (await world.audit())[-1] == (
        "settings.changed",
        MOD,
        None,
        {
            "allowance": 30,
            "period": "day",
            "timezone": "Europe/Paris",
            "guild_cap": None,
            "moderator_role_id": 77,
            "allowed_channels": [CHANNEL_A, CHANNEL_B],
            "allowed_models": ["sora-2"],
            "allowed_sizes": ["720x1280"],
            "allowed_seconds": [4, 8],
        },
    )

    cleared = await credits.update_settings(
        GUILD, actor_id=MOD, change=SettingsChange(channels="all", models="ALL", clear_moderator_role=True)
    )
    assert (cleared.policy.allowed_channels, cleared.policy.allowed_models) == ((), ())
    assert cleared.policy.moderator_role_id is None
    assert cleared.policy.allowance == 30  # what wasn't given stays


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (SettingsChange(timezone="Mars/Olympus"), "`Mars/Olympus` is not a time zone name."),
        (SettingsChange(channels="#videos"), "Name channels as #mentions or ids"),
        (SettingsChange(channels=" , "), "Give the channels separated by commas, or `all`"),
        (SettingsChange(models="sora-2, sora-9"), "Unknown model(s): sora-9. The catalog has sora-2"),
        (SettingsChange(sizes="1x1"), "Unknown size(s): 1x1. Sizes: "),
        (SettingsChange(seconds="4, five"), "Durations must be among "),
    ],
)
async def test_bad_settings_are_refused_in_words_and_store_nothing(
    world: World, change: SettingsChange, message: str
) -> None:
    # Every option is checked before anything is written, even the ones that were valid.
    with pytest.raises(UserError) as refused:
        await world.credits.update_settings(GUILD, actor_id=MOD, change=replace(change, allowance=1))
    assert refused.value.user_message.startswith(message)
    assert "\n" not in refused.value.user_message
    assert await world.credits.policy(GUILD) == GuildPolicy()
    assert await world.audit() == []


async def test_role_overrides_set_and_remove(world: World) -> None:
    credits = world.credits
    result = await credits.set_role_override(GUILD, actor_id=MOD, override=RoleOverride(77, allowance=90))
    assert result.roles == [RoleOverride(77, allowance=90)]
    assert (await credits.balance(GUILD, ANA, [77]))[0].limits.allowance == 90
    result = await credits.set_role_override(GUILD, actor_id=MOD, override=RoleOverride(77))
    assert result.roles == []
    assert await world.audit() == [
        ("role.override", MOD, None, {"role": 77, "allowance": 90, "max_concurrent": None}),
        ("role.override", MOD, None, {"role": 77, "allowance": None, "max_concurrent": None}),
    ]


async def test_quota_shows_the_videos_in_progress_and_the_job_list_filters_and_pages(world: World) -> None:
    credits = world.credits
    done = [await world.add_job(ANA, JobStatus.COMPLETED, ChargeState.CHARGED) for _ in range(11)]
    running = await world.add_job(ANA, JobStatus.IN_PROGRESS, ChargeState.RESERVED)
    theirs = await world.add_job(BO, JobStatus.QUEUED, ChargeState.RESERVED)

    mine = await credits.member_credits(GUILD, ANA, [])
    assert [job.id for job in mine.in_progress] == [running]
    assert (mine.balance.usage.used, mine.balance.usage.reserved) == (44, 4)

    active = await credits.jobs(GUILD, status="active")
    assert ([j.id for j in active.jobs], active.pages, active.total) == ([theirs, running], 1, 2)
    first = await credits.jobs(GUILD, user_id=ANA, status="completed")
    assert ([j.id for j in first.jobs], first.pages, first.total) == (done[::-1][:10], 2, 11)
    second = await credits.jobs(GUILD, user_id=ANA, status="completed", page=2)
    assert [j.id for j in second.jobs] == [done[0]]
    beyond = await credits.jobs(GUILD, page=5)
    assert (beyond.jobs, beyond.pages) == ([], 2)
    assert (await credits.jobs(GUILD, status="cancelled")).jobs == []


async def test_usage_report_and_its_csv(world: World) -> None:
    await world.add_job(ANA, JobStatus.COMPLETED, ChargeState.CHARGED, cost=8)
    await world.add_job(ANA, JobStatus.COMPLETED, ChargeState.CHARGED, cost=4)
    await world.add_job(BO, JobStatus.FAILED, ChargeState.REFUNDED, cost=4, name="bo")
    summary = await world.credits.usage(GUILD)
    assert (summary.period, summary.start) == ("week", period_bounds("week", "UTC", MONDAY_NOON)[0])
    rows = list(csv.reader(io.StringIO(summary.csv)))
    assert rows == [
        ["section", "model_or_user", "status", "charge_state", "jobs", "seconds", "credits", "usd"],
        ["model", "sora-2", "completed", "charged", "2", "12", "12", "1.20"],
        ["model", "sora-2", "failed", "refunded", "1", "4", "4", "0.40"],
        ["member", str(ANA), "", "charged", "2", "12", "12", "1.20"],
    ]
    assert [m.user_name for m in summary.report.top_members] == ["ana"]
    day = await world.credits.usage(GUILD, "day")
    assert (day.period, day.start) == ("day", period_bounds("day", "UTC", MONDAY_NOON)[0])


async def test_check_request_refuses_with_the_members_numbers(world: World) -> None:
    await world.credits.set_allowance(GUILD, actor_id=MOD, user_id=ANA, roles=[], credits=4)
    request = JobRequest(
        guild_id=GUILD,
        channel_id=5,
        user_id=ANA,
        user_name="ana",
        prompt="a fox",
        model="sora-2",
        size="720x1280",
        seconds=8,
        cost=8,
        usd=0.8,
    )
    with pytest.raises(UserError, match="This needs 8 credits; you have 4 left"):
        await world.credits.check_request(request)
    async with world.repo.transaction() as tx:  # the same check inside a reservation
        with pytest.raises(UserError, match="This needs 8 credits; you have 4 left"):
            await world.credits.check_request(request, tx=tx)
    await world.credits.check_request(replace(request, guild_id=None))  # DMs have no server limits
