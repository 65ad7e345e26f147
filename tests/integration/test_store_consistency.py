"""Reads against writes, on both backends: a read never sees another coroutine's uncommitted
transaction (SQLite: one shared connection, the read waits; PostgreSQL: a pool, the read answers
the last committed state at once), and a misuse that would hang (a task waiting for its own transaction)
fails at once with a message instead."""

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
            # The transaction keeps working on the connection; on the old shared connection the read
            # ran between these statements and returned allowance 1, a value that is never committed.
            for _ in range(ROUND_TRIPS):
                await store.fetchone("SELECT 1", tx=tx)
            if store.backend == "sqlite":
                assert not read.done(), "the read went ahead inside another coroutine's transaction"
            raise Rollback
    assert (await read).allowance == 60  # what is stored: the change was rolled back

    async with store.transaction() as tx:
        await credits.set_policy(GUILD, GuildPolicy(allowance=7), tx)
        read = asyncio.create_task(credits.policy(GUILD))
        for _ in range(ROUND_TRIPS):
            await store.fetchone("SELECT 1", tx=tx)
        if store.backend == "sqlite":
            assert not read.done()
    # SQLite: issued during the transaction, answered with its commit; PostgreSQL: answered at once
    # with what was committed then (never the uncommitted 7).
    assert (await read).allowance == (7 if store.backend == "sqlite" else 60)
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
