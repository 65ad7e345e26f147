"""The check before a member's command is acknowledged reuses the guild's policy for a few seconds
(two reads instead of a snapshot). A copy made stale by a moderator in another process never
refuses wrongly, and is read again after ``GUILD_LIMITS_SECONDS``; the submit checks afresh."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from bot.adapters.sql.credits import SqlCreditsRepository
from bot.adapters.sql.store import SqlStore
from bot.app import credits_service, job_service
from bot.domain.credits import GuildPolicy
from bot.domain.errors import RequestRefused
from bot.services.credits import GUILD_LIMITS_SECONDS, SettingsChange
from tests.backends import Backend
from tests.helpers import ManualClock
from tests.integration.test_tracker import request


@pytest.fixture
async def stores(backend: Backend) -> AsyncIterator[tuple[SqlStore, SqlStore]]:
    """This process's store and another process's, on one database."""
    async with backend.open("shared") as here, backend.open("shared") as there:
        yield here, there


async def set_policy(store: SqlStore, policy: GuildPolicy) -> None:
    async with store.transaction() as tx:
        await SqlCreditsRepository(store).set_policy(1, policy, tx)


async def test_a_policy_relaxed_elsewhere_never_refuses_from_the_old_copy(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    here, there = stores
    await set_policy(there, GuildPolicy(allowed_channels=(2,)))
    clock = ManualClock(time.time())
    credits = credits_service(here, clock=clock)
    await credits.precheck(request("in the allowed channel"))  # the policy is now reused here
    # A moderator in the other process opens every channel.
    await set_policy(there, GuildPolicy())
    await credits.precheck(request("in another channel", channel_id=7))  # not refused


async def test_a_policy_tightened_elsewhere_is_seen_by_the_submit_at_once_and_the_precheck_soon(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    here, there = stores
    clock = ManualClock(time.time())
    credits = credits_service(here, clock=clock)
    jobs = job_service(here, credits=credits, clock=clock)
    await credits.precheck(request("first"))
    await set_policy(there, GuildPolicy(allowed_channels=(99,)))
    # Within the reuse window the precheck may pass on the old copy; the submit never does.
    await credits.precheck(request("second"))
    with pytest.raises(RequestRefused):
        await jobs.submit(request("second"))
    clock.advance(GUILD_LIMITS_SECONDS + 1)
    with pytest.raises(RequestRefused) as refused:
        await credits.precheck(request("third"))
    assert "channel" in str(refused.value).lower()


async def test_a_change_made_in_this_process_is_checked_at_once(stores: tuple[SqlStore, SqlStore]) -> None:
    here, _ = stores
    clock = ManualClock(time.time())
    credits = credits_service(here, clock=clock)
    await credits.precheck(request("before"))
    settings = await credits.update_settings(1, actor_id=5, change=SettingsChange(allowance=0))
    assert settings.policy.allowance == 0
    with pytest.raises(RequestRefused):
        await credits.precheck(request("after"))
