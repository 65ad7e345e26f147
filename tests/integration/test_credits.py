"""Credits against each real backend (a SQLite file, PostgreSQL): reservation, period reset,
overrides, grants, the race (also across two connection pools and two processes)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bot.app import job_service
from bot.domain.credits import GuildPolicy, RoleOverride, period_bounds
from bot.domain.errors import UserError
from bot.domain.jobs import ChargeState, JobRequest, JobStatus
from bot.services.jobs import JobService
from tests.backends import Backend

GUILD, USER = 100, 200
MONDAY_NOON = 1_795_780_800.0  # 2026-11-30 12:00 UTC, a Monday


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def request(cost: int = 4, user_id: int = USER, **changes: object) -> JobRequest:
    base = JobRequest(
        guild_id=GUILD,
        channel_id=5,
        user_id=user_id,
        user_name="ana",
        prompt="a fox",
        model="sora-2",
        size="720x1280",
        seconds=cost,
        cost=cost,
        usd=cost / 10,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def set_policy(service: JobService, **changes: object) -> None:
    async with service.store.transaction() as conn:
        await service.credits.credits.set_policy(GUILD, replace(GuildPolicy(), **changes), conn)  # type: ignore[arg-type]


async def settle(service: JobService, job_id: int, charge: ChargeState) -> None:
    status = JobStatus.COMPLETED if charge is ChargeState.CHARGED else JobStatus.FAILED
    await service.store.update_job(job_id, status=status, charge_state=charge)


@pytest.fixture
async def service(backend: Backend) -> JobService:
    clock = Clock(MONDAY_NOON)
    store = await backend.connect(clock=clock)
    yield job_service(store, clock=clock)  # type: ignore[misc]
    await store.close()


async def test_allowance_reserve_charge_refund_and_weekly_reset(service: JobService) -> None:
    clock: Clock = service._clock  # type: ignore[assignment]
    await set_policy(service, allowance=10, cooldown_seconds=0)
    first = await service.submit(request(cost=8))
    balance, _ = await service.balance(GUILD, USER)
    assert (balance.usage.reserved, balance.remaining) == (8, 2)
    with pytest.raises(UserError, match="This needs 4 credits; you have 2 left"):
        await service.submit(request(cost=4))
    await settle(service, first.id, ChargeState.CHARGED)
    balance, _ = await service.balance(GUILD, USER)
    assert (balance.usage.used, balance.usage.reserved, balance.remaining) == (8, 0, 2)
    # A refunded job costs nothing.
    second = await service.submit(request(cost=2))
    await settle(service, second.id, ChargeState.REFUNDED)
    assert (await service.balance(GUILD, USER))[0].remaining == 2
    # Next Monday 00:00 UTC the week starts again.
    _, end = period_bounds("week", "UTC", clock.now)
    clock.now = end - 1
    assert (await service.balance(GUILD, USER))[0].remaining == 2
    clock.now = end
    balance, _ = await service.balance(GUILD, USER)
    assert balance.remaining == 10
    assert balance.resets_at == end + 7 * 86400


async def test_member_override_role_override_grant_and_reset(service: JobService) -> None:
    await set_policy(service, allowance=10, cooldown_seconds=0, max_concurrent=5)
    async with service.store.transaction() as conn:
        await service.credits.credits.set_role_override(GUILD, RoleOverride(77, allowance=40), conn)
    assert (await service.balance(GUILD, USER, [77]))[0].remaining == 40
    assert (await service.balance(GUILD, USER, []))[0].remaining == 10
    async with service.store.transaction() as conn:
        await service.credits.credits.set_member_allowance(GUILD, USER, 12, conn)
    job = await service.submit(request(cost=12), member_roles=[77])
    await settle(service, job.id, ChargeState.CHARGED)
    assert (await service.balance(GUILD, USER, [77]))[0].remaining == 0
    async with service.store.transaction() as conn:
        await service.credits.credits.add_grant(GUILD, USER, 4, granted_by=1, conn=conn)
    assert (await service.balance(GUILD, USER, [77]))[0].remaining == 4
    service._clock.now += 1  # type: ignore[attr-defined]
    async with service.store.transaction() as conn:
        await service.credits.credits.reset_member(GUILD, USER, conn)
    balance, _ = await service.balance(GUILD, USER, [77])
    assert (balance.usage.used, balance.remaining) == (0, 12)


async def test_cooldown_concurrency_guild_cap_and_channels(service: JobService) -> None:
    await set_policy(service, cooldown_seconds=60, max_concurrent=1, guild_cap=10, allowed_channels=(5,))
    await service.submit(request(cost=4))
    with pytest.raises(UserError, match="already have 1 video in progress"):
        await service.submit(request(cost=4))
    await set_policy(service, cooldown_seconds=60, max_concurrent=3, guild_cap=10, allowed_channels=(5,))
    with pytest.raises(UserError, match="Slow down a little"):
        await service.submit(request(cost=4))
    with pytest.raises(UserError, match="used its video budget"):
        await service.submit(request(cost=8, user_id=201))
    with pytest.raises(UserError, match="can't be made in this channel"):
        await service.submit(request(cost=4, user_id=202, channel_id=6))
    await service.submit(request(cost=4, user_id=203))
    entries = await service.credits.credits.audit_entries(GUILD)
    assert [e["action"] for e in entries] == ["job.submitted", "job.submitted"]


async def test_twenty_simultaneous_requests_with_room_for_three(backend: Backend) -> None:
    """Real concurrency: twenty connections (SQLite) or twenty pools (PostgreSQL, as twenty
    processes would have) race to reserve credits in one database."""
    async with backend.open() as store:
        setup = job_service(store)
        await set_policy(setup, allowance=12, cooldown_seconds=0, max_concurrent=20)
    stores = [await backend.connect() for _ in range(20)]
    try:
        services = [job_service(s) for s in stores]
        results = await asyncio.gather(*(s.submit(request(cost=4)) for s in services), return_exceptions=True)
        accepted = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, UserError)]
        assert len(accepted) == 3
        assert len(refused) == 17
        assert all("you have 0 left" in r.user_message for r in refused)
        balance, _ = await services[0].balance(GUILD, USER)
        assert (balance.usage.reserved, balance.remaining) == (12, 0)
    finally:
        for s in stores:
            await s.close()
