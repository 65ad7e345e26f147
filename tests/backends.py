"""The two database backends as fixtures (a pytest plugin, registered in ``tests/conftest.py``).

``backend`` is parametrized: every test that takes it runs once on a SQLite file and once on
PostgreSQL. ``backend.open()`` opens the test's store (the same database each time within one
test); ``backend.open("other")`` a second, separate one.

PostgreSQL: ``VIDEOBOT_TEST_POSTGRES_URL`` (a role that may ``CREATE DATABASE``) when set; otherwise
each test session (each xdist worker) starts its own throwaway cluster with ``initdb``/``pg_ctl``
from ``/usr/lib/postgresql/*/bin`` in a temporary directory, on a free port on 127.0.0.1, as the
``postgres`` user when running as root, and stops it at the end. No fsync: the data is thrown away.
Each test gets fresh databases made with ``CREATE DATABASE … TEMPLATE`` of one migrated template
(a file copy, a few milliseconds). PostgreSQL missing is a failure that says how to install it,
never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.adapters.postgres.store import PostgresStore
from bot.adapters.sql.store import SqlStore
from bot.adapters.sqlite.store import Store

URL_VARIABLE = "VIDEOBOT_TEST_POSTGRES_URL"
TEMPLATE = "videobot_template"
PASSWORD = "pg-test-secret-7f3a"  # trust auth accepts any; it is there to prove it is never shown
_numbers = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


class PostgresCluster:
    """A private PostgreSQL server in a temporary directory (see the module docstring)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
        if not found:
            pytest.fail(
                "PostgreSQL is not installed, and the PostgreSQL half of the store tests needs it: "
                "install it (`apt-get install -y postgresql`; .ci/run does) or point "
                f"{URL_VARIABLE} at a server whose user may CREATE DATABASE.",
                pytrace=False,
            )
        self.bin = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="videobot-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # the server refuses to run as root: it runs as postgres
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    def _run(self, *command: str) -> None:
        argv = [str(self.bin / command[0]), *command[1:]]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command[:2])} failed: {result.stdout}{result.stderr}", pytrace=False)

    def start(self) -> str:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@dataclass
class PostgresServer:
    """The server the tests use: ``admin_url`` may create databases; ``new_database()`` makes one
    from the migrated template and returns its URL."""

    admin_url: str
    prefix: str
    created: list[str] = field(default_factory=list)

    async def new_database(self) -> str:
        name = f"{self.prefix}_{next(_numbers)}"
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        finally:
            await conn.close()
        self.created.append(name)
        return _with_database(self.admin_url, name)

    @property
    def template(self) -> str:
        return f"{self.prefix}_template"

    async def make_template(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.template}"')
            await conn.execute(f'CREATE DATABASE "{self.template}"')
        finally:
            await conn.close()
        async with PostgresStore.open(_with_database(self.admin_url, self.template), pool_size=1):
            pass  # migrated; a template must have no connections when it is copied

    async def drop_all(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            for name in [*self.created, self.template]:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def postgres_server(worker_id: str) -> Iterator[PostgresServer]:
    """One PostgreSQL server for this test session (worker), with a migrated template database."""
    given = os.environ.get(URL_VARIABLE, "").strip()
    cluster = None
    if given:
        admin_url = given
    else:
        cluster = PostgresCluster()
        admin_url = cluster.start()
    server = PostgresServer(admin_url, prefix=f"vb_{worker_id}_{os.getpid()}")
    try:
        asyncio.run(server.make_template())
        yield server
    finally:
        if cluster is not None:
            cluster.stop()
        else:
            asyncio.run(server.drop_all())


@dataclass
class Backend:
    """One backend for one test: ``open()`` its store (same database each call)."""

    kind: str
    tmp_path: Path
    server: PostgresServer | None = None
    urls: dict[str, str] = field(default_factory=dict)

    async def url(self, name: str = "bot") -> str:
        """``DATABASE_URL`` of the test's database ``name`` (created on first use)."""
        if self.server is None:
            return f"sqlite:///{self.tmp_path / f'{name}.db'}"
        if name not in self.urls:
            self.urls[name] = await self.server.new_database()
        return self.urls[name]

    @contextlib.asynccontextmanager
    async def open(
        self, name: str = "bot", *, clock: Callable[[], float] | None = None
    ) -> AsyncIterator[SqlStore]:
        options: dict[str, Any] = {} if clock is None else {"clock": clock}
        if self.server is None:
            async with Store.open(self.tmp_path / f"{name}.db", **options) as store:
                yield store
        else:
            async with PostgresStore.open(await self.url(name), **options) as pg:
                yield pg

    async def connect(self, name: str = "bot", *, clock: Callable[[], float] | None = None) -> SqlStore:
        """An open store the caller closes (for fixtures that hand it on)."""
        options: dict[str, Any] = {} if clock is None else {"clock": clock}
        if self.server is None:
            return await Store.connect(self.tmp_path / f"{name}.db", **options)
        return await PostgresStore.connect(await self.url(name), **options)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path)
    return Backend("postgresql", tmp_path, request.getfixturevalue("postgres_server"))
