"""Database engines, session factories and the per-request session dependency."""

from __future__ import annotations

import select
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

_WRITE_OPTION = "arena_write_transaction"
# Execution options for a transaction that will write (on SQLite it takes the write lock at BEGIN).
WRITE_TRANSACTION: dict[str, Any] = {_WRITE_OPTION: True}
_READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _driver_url(url: str, *, asynchronous: bool) -> URL:
    """Take URLs as people write them (`sqlite:///x.db`, `postgresql://u@h/db`); pick the driver."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"ARENA_DATABASE_URL must be a sqlite:/// or postgresql:// URL; got the {backend!r} scheme"
    )


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _prepare_sqlite_file(url: URL) -> None:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; synchronous=FULL makes an acknowledged vote
    # survive a power cut, not only a process crash.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_manual_begin(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own BEGIN is always deferred; _begin emits the one each transaction needs.
    dbapi_connection.isolation_level = None


def _begin(connection: Connection) -> None:
    # A deferred transaction that reads and then writes fails at once with "database is locked"
    # when another writer committed in between (WAL's stale snapshot; the busy timeout does not
    # apply). Transactions that will write say so (WRITE_TRANSACTION) and take the write lock at
    # BEGIN, waiting their turn; readers stay deferred and never wait.
    immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _discard_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """pool_pre_ping's work without its round trip to the server on every checkout.

    An idle pooled connection has nothing to read. When PostgreSQL ends it (a restart, a
    terminated backend, an idle timeout) it sends its farewell and closes the socket, which then
    reads as ready: the pool throws that connection away and opens a new one, so the request
    after a database restart still succeeds."""
    connection = dbapi_connection.driver_connection
    if connection.closed or connection.broken:
        raise DisconnectionError("the pooled connection is closed")
    readable, _, _ = select.select([connection.pgconn.socket], [], [], 0)
    if readable:
        raise DisconnectionError("the database server closed the pooled connection")


def make_async_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> AsyncEngine:
    """`pool_size` and `max_overflow` size PostgreSQL's pool. SQLite keeps a small one: it has one
    writer, and more connections waiting for it wait longer (its busy handler sleeps)."""
    driver_url = _driver_url(url, asynchronous=True)
    if driver_url.get_backend_name() == "sqlite":
        _prepare_sqlite_file(driver_url)
        engine = create_async_engine(driver_url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "connect", _sqlite_manual_begin)
        event.listen(engine.sync_engine, "begin", _begin)
        return engine
    engine = create_async_engine(
        driver_url, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800
    )
    event.listen(engine.sync_engine, "checkout", _discard_if_closed_by_server)
    return engine


def make_sync_engine(url: str) -> Engine:
    driver_url = _driver_url(url, asynchronous=False)
    if driver_url.get_backend_name() == "sqlite":
        _prepare_sqlite_file(driver_url)
        engine = create_engine(driver_url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(driver_url, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def begin_write(session: AsyncSession) -> None:
    """Declare, before its first statement, that the session's transaction will write."""
    await session.connection(execution_options=WRITE_TRANSACTION)


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; the route commits before it returns, never after the response."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        if request.method not in _READ_ONLY_METHODS:
            await begin_write(session)
        yield session


SessionDep = Annotated[AsyncSession, Depends(request_session)]
