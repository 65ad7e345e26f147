"""Reads against writes, on both backends: a read never sees another coroutine's uncommitted
transaction and never waits for it either (SQLite: a read-only connection beside the writer;
PostgreSQL: a pool): it answers the last committed state at once. A misuse that would hang (a task
waiting for its own transaction) fails at once with a message instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.adapters.sql.credits import SqlCreditsRepository
from bot.adapters.sql.store import SqlStore as Store
from bot.domain.credits import GuildPolicy
from tests.backends import Backend

GUILD = 100
ROUND_TRIPS = 20  # far more than one read needs, so a read that doesn't wait finishes in between
READ_TIMEOUT = 10.0  # bounds a read that would wait for the open transaction (the bug)


class Rollback(Exception):
    pass


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    async with backend.open() as db:
        yield db


async def test_a_read_during_an_open_transaction_never_sees_its_uncommitted_change(store: Store) -> None:
    credits = SqlCreditsRepository(store)
    with pytest.raises(Rollback):
        async with store.transaction() as tx:
            await credits.set_policy(GUILD, GuildPolicy(allowance=1), tx)
            read = asyncio.create_task(credits.policy(GUILD))
            # The transaction keeps working; on the old shared connection the read ran between these
            # statements and returned allowance 1, a value that is never committed.
            for _ in range(ROUND_TRIPS):
                await store.fetchone("SELECT 1", tx=tx)
            # Answered while the transaction is still open: it doesn't wait for the writer (if it
            # did, this would time out, the transaction holding the writer until it ends).
            assert (await asyncio.wait_for(read, READ_TIMEOUT)).allowance == 60
            raise Rollback
    assert (await read).allowance == 60  # what is stored: the change was rolled back

    async with store.transaction() as tx:
        await credits.set_policy(GUILD, GuildPolicy(allowance=7), tx)
        read = asyncio.create_task(credits.policy(GUILD))
        for _ in range(ROUND_TRIPS):
            await store.fetchone("SELECT 1", tx=tx)
        await asyncio.wait_for(asyncio.shield(read), READ_TIMEOUT)
    # Answered at once with what was committed then (never the uncommitted 7); a read issued after
    # the commit sees it.
    assert (await read).allowance == 60
    assert (await credits.policy(GUILD)).allowance == 7


async def test_a_read_that_forgets_its_own_transaction_fails_instead_of_hanging(store: Store) -> None:
    credits = SqlCreditsRepository(store)
    async with store.transaction() as tx:
        await credits.set_policy(GUILD, GuildPolicy(allowance=5), tx)
        with pytest.raises(RuntimeError, match="pass it"):
            await credits.policy(GUILD)
        assert (await credits.policy(GUILD, tx)).allowance == 5  # inside, it sees its own write
    assert (await credits.policy(GUILD)).allowance == 5


async def test_writes_need_an_open_transaction_of_the_same_store(store: Store, backend: Backend) -> None:
    credits = SqlCreditsRepository(store)
    async with store.snapshot() as snapshot:
        assert (await credits.policy(GUILD, snapshot)).allowance == 60
        with pytest.raises(ValueError, match="not a snapshot"):
            await credits.set_policy(GUILD, GuildPolicy(allowance=1), snapshot)
    async with store.transaction() as tx:
        pass
    with pytest.raises(ValueError, match="not an open transaction"):
        await credits.set_policy(GUILD, GuildPolicy(allowance=1), tx)  # closed
    async with backend.open("other") as other, other.transaction() as foreign:
        with pytest.raises(ValueError, match="not an open transaction"):
            await credits.set_policy(GUILD, GuildPolicy(allowance=1), foreign)
    assert (await credits.policy(GUILD)).allowance == 60
