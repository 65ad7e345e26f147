"""Reads against writes on one shared SQLite connection: a read never sees another coroutine's
uncommitted transaction, and a misuse that would hang (a task waiting for its own transaction)
fails at once with a message instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.sql.credits import SqlCreditsRepository
from bot.adapters.sqlite.store import Store
from bot.domain.credits import GuildPolicy

GUILD = 100
ROUND_TRIPS = 20  # far more than one read needs, so a read that doesn't wait finishes in between


class Rollback(Exception):
    pass


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "bot.db") as db:
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
            assert not read.done(), "the read went ahead inside another coroutine's transaction"
            raise Rollback
    assert (await read).allowance == 60  # what is stored: the change was rolled back

    async with store.transaction() as tx:
        await credits.set_policy(GUILD, GuildPolicy(allowance=7), tx)
        read = asyncio.create_task(credits.policy(GUILD))
        for _ in range(ROUND_TRIPS):
            await store.fetchone("SELECT 1", tx=tx)
        assert not read.done()
    assert (await read).allowance == 7  # issued during the transaction, answered with its commit


async def test_a_read_that_forgets_its_own_transaction_fails_instead_of_hanging(store: Store) -> None:
    credits = SqlCreditsRepository(store)
    async with store.transaction() as tx:
        await credits.set_policy(GUILD, GuildPolicy(allowance=5), tx)
        with pytest.raises(RuntimeError, match="pass it"):
            await credits.policy(GUILD)
        assert (await credits.policy(GUILD, tx)).allowance == 5  # inside, it sees its own write
    assert (await credits.policy(GUILD)).allowance == 5


async def test_writes_need_an_open_transaction_of_the_same_store(store: Store, tmp_path: Path) -> None:
    credits = SqlCreditsRepository(store)
    async with store.snapshot() as snapshot:
        assert (await credits.policy(GUILD, snapshot)).allowance == 60
        with pytest.raises(ValueError, match="not a snapshot"):
            await credits.set_policy(GUILD, GuildPolicy(allowance=1), snapshot)
    async with store.transaction() as tx:
        pass
    with pytest.raises(ValueError, match="not an open transaction"):
        await credits.set_policy(GUILD, GuildPolicy(allowance=1), tx)  # closed
    async with Store.open(tmp_path / "other.db") as other, other.transaction() as foreign:
        with pytest.raises(ValueError, match="not an open transaction"):
            await credits.set_policy(GUILD, GuildPolicy(allowance=1), foreign)
    assert (await credits.policy(GUILD)).allowance == 60
