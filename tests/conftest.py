"""Shared fixtures: the databases (SQLite file and PostgreSQL), the arena under uvicorn, seeding."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from arena import migrate
from arena.app import create_app
from arena.config import Settings
from arena.db import in_one_transaction, make_sync_engine
from arena.http_protocol import ArenaHttpProtocol
from arena.models import Base, ModelStatus
from arena.registry import service as registry
from arena.registry.keys import KeyRing
from tests.servers import ServerThread

pytest_plugins = ["tests.fake_upstream", "tests.forward_proxy", "tests.browser"]

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("ARENA_TEST_DATABASE_URL", "")


def require(condition: bool, why: str) -> None:
    """Skip on a developer's machine without a part; fail under CI, where every part must run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{why} (CI=true: every part must be present)")
    pytest.skip(why)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: once Playwright's sync API has started, it keeps an event loop running
    in the main thread, and tests that run a loop of their own (asyncio.run) must come before."""
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
    items.sort(key=lambda item: "chromium" in getattr(item, "fixturenames", ()))


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "arena.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of our own on the PostgreSQL server, migrated once, dropped at the end."""
    require(bool(PG_URL), "PostgreSQL tests need ARENA_TEST_DATABASE_URL")
    name = f"arena_test_{uuid.uuid4().hex[:12]}"
    admin = make_sync_engine(PG_URL).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the server is down or refuses us
        admin.dispose()
        require(False, f"PostgreSQL at ARENA_TEST_DATABASE_URL is not usable: {exc}")
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_all(url: str) -> None:
    engine = make_sync_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def empty_postgres_database(postgres_database: str) -> str:
    """The PostgreSQL test database with nothing left in it by the tests before."""
    _truncate_all(postgres_database)
    return postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that needs a database runs once on a fresh SQLite file, once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "arena.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("empty_postgres_database")
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "secret_key": Fernet.generate_key().decode(),
        "admin_token": "admin-token-for-tests-0123456789",
        "allow_private_endpoints": True,
        "first_token_timeout": 3.0,
        "idle_timeout": 2.0,
        "total_timeout": 10.0,
        "connect_timeout": 2.0,
        # Test clients vote at machine speed; the reading-time check has tests of its own.
        "min_vote_seconds": 0.0,
        "max_reading_seconds": 0.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def run_db(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction against the test database."""

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(in_one_transaction(settings.database_url, work))
    # Playwright's sync API keeps an event loop running in this thread; asyncio.run needs its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, in_one_transaction(settings.database_url, work)).result()


# ---------------------------------------------------------------- the arena


@dataclass
class Arena:
    """A running arena: its URL, its settings, and ways to seed and inspect its database."""

    url: str
    settings: Settings
    server: ServerThread

    def client(self, **kwargs: Any) -> httpx.Client:
        """A visitor: its own cookie jar, so two clients are two browser sessions."""
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def db(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        return run_db(self.settings, work)

    def add_model(
        self,
        name: str,
        base_url: str,
        upstream_model: str = "normal",
        **fields: Any,
    ) -> int:
        return add_model(self.settings, name, base_url, upstream_model, **fields)


def add_model(
    settings: Settings,
    name: str,
    base_url: str,
    upstream_model: str = "normal",
    *,
    organization: str = "",
    status: ModelStatus = ModelStatus.active,
    api_key: str | None = None,
    **fields: Any,
) -> int:
    """Register a model as the operator's CLI does (no probe); its id. No server needed."""
    keys = KeyRing.from_settings(settings)
    fields.update(organization=organization, api_key=api_key)
    new = registry.NewModel(name, base_url, upstream_model, **fields)

    async def work(session: AsyncSession) -> int:
        added = await registry.add_model(session, new=new, keys=keys, status=status, actor="test")
        return added.id

    return run_db(settings, work)


def start_arena(settings: Settings) -> Arena:
    server = ServerThread(create_app(settings), http=ArenaHttpProtocol).start()
    return Arena(url=server.url, settings=settings, server=server)


@pytest.fixture
def arena(settings: Settings) -> Iterator[Arena]:
    running = start_arena(settings)
    yield running
    running.server.stop()


@pytest.fixture
def arena_factory(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Arena]]:
    """Start an arena with settings of the test's choosing."""
    started: list[Arena] = []

    def start(**overrides: Any) -> Arena:
        running = start_arena(make_settings(database_url, tmp_path, **overrides))
        started.append(running)
        return running

    yield start
    for running in started:
        running.server.stop()
