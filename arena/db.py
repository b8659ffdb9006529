"""Database engines, session factories and the per-request session dependency."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
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

T = TypeVar("T")

log = logging.getLogger(__name__)

# How long a shared transaction on PostgreSQL waits for a row lock (see `Transactions._drain`).
_SHARED_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '100ms'"

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


def database_location(url: str) -> str:
    """Where the database is, for a person: a SQLite file's full path, else the URL without its
    password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return "an in-memory SQLite database"
        return str(Path(parsed.database).resolve())
    return parsed.render_as_string(hide_password=True)


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


def _begin_statement(connection: Connection) -> str:
    # A deferred transaction that reads and then writes fails at once with "database is locked"
    # when another writer committed in between (WAL's stale snapshot; the busy timeout does not
    # apply). Transactions that will write say so (WRITE_TRANSACTION) and take the write lock at
    # BEGIN, waiting their turn; readers stay deferred and never wait.
    immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
    return "BEGIN IMMEDIATE" if immediate else "BEGIN"


def _begin(connection: Connection) -> None:
    connection.exec_driver_sql(_begin_statement(connection))


def _begin_on_driver(connection: Connection) -> None:
    # _begin for a plain sqlite3 connection, straight to the driver: SQLAlchemy's statement
    # machinery cost more than SQLite's BEGIN.
    driver: Any = connection.connection.driver_connection
    driver.execute(_begin_statement(connection))


def _discard_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """pool_pre_ping's work without its round trip to the server on every checkout: a
    connection the server closed goes, and the pool opens a new one, so the request after a
    database restart still succeeds."""
    if _closed_by_server(dbapi_connection.driver_connection):
        raise DisconnectionError("the database server closed the pooled connection")


def _closed_by_server(connection: Any) -> bool:
    """Whether PostgreSQL ended this idle psycopg connection (a restart, a terminated backend,
    an idle timeout): it sends its farewell and closes the socket, which then reads as ready,
    while an idle connection in good health has nothing to read."""
    if connection.closed or connection.broken:
        return True
    readable, _, _ = select.select([connection.pgconn.socket], [], [], 0)
    return bool(readable)


@dataclass
class _WriterTurns:
    """The queue of this process's writers to one SQLite database (one lock per event loop)."""

    loop: asyncio.AbstractEventLoop | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, _WriterTurns] = weakref.WeakKeyDictionary()


def writer_turn(engine: AsyncEngine) -> contextlib.AbstractAsyncContextManager[object]:
    """On SQLite, wait for this process's earlier writers before taking the write lock.

    SQLite hands its write lock to whoever retries first: a waiting BEGIN IMMEDIATE sleeps in the
    busy handler (1, 2, 5 ... up to 100 ms a time), so under load a writer can lose turn after
    turn for a second or more, holding a pooled connection meanwhile. Queued here in arrival
    order, the writers of one worker never meet in the busy handler (other processes still do).
    Take it before checking out a connection: a writer that waits here holding one could starve
    the pool that the writer ahead of it needs. A no-op on PostgreSQL, whose row locks need no
    such queue."""
    turns = _SQLITE_WRITERS.get(engine.sync_engine)
    if turns is None:
        return contextlib.nullcontext()
    loop = asyncio.get_running_loop()
    if turns.loop is not loop:  # an asyncio.Lock belongs to one loop; tests run several
        turns.loop, turns.lock = loop, asyncio.Lock()
    return turns.lock


@asynccontextmanager
async def write_session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session in a write transaction, committed when the block ends (rolled back on error),
    after this process's earlier writers (`writer_turn`)."""
    engine = sessionmaker.kw["bind"]
    async with writer_turn(engine), sessionmaker() as session, session.begin():
        await begin_write(session)
        yield session


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
        _SQLITE_WRITERS[engine.sync_engine] = _WriterTurns()
        return engine
    engine = create_async_engine(
        driver_url, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800
    )
    event.listen(engine.sync_engine, "checkout", _discard_if_closed_by_server)
    return engine


def fast_json(value: Any) -> str:
    """JSON text of `value` as json.dumps gives it, up to spacing and float spelling, and about
    eight times faster (orjson); keys that are not text become text, as json.dumps makes them."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def make_sync_engine(
    url: str,
    *,
    json_serializer: Callable[[Any], str] | None = None,
    json_deserializer: Callable[[str], Any] | None = None,
) -> Engine:
    """`json_serializer` writes the JSON columns, `json_deserializer` reads them (default:
    json.dumps and json.loads)."""
    driver_url = _driver_url(url, asynchronous=False)
    options: dict[str, Any] = {}
    if json_serializer is not None:
        options["json_serializer"] = json_serializer
    if json_deserializer is not None:
        options["json_deserializer"] = json_deserializer
    if driver_url.get_backend_name() == "sqlite":
        _prepare_sqlite_file(driver_url)
        engine = create_engine(driver_url, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(driver_url, pool_pre_ping=True, **options)


def _sync_engine_for_threads(async_url: URL) -> Engine:
    """The blocking-driver engine behind `Transactions`: two connections, one per thread."""
    if async_url.get_backend_name() == "sqlite":
        # Each connection serves one thread at a time, but not always the thread that opened it.
        engine = create_engine(
            async_url.set(drivername="sqlite"),
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=2,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "connect", _sqlite_manual_begin)
        event.listen(engine, "begin", _begin_on_driver)
        return engine
    return create_engine(async_url, pool_size=2, pool_recycle=1800)


@dataclass(frozen=True)
class _QueuedWrite:
    work: Callable[[Connection], Any]
    to_disk: bool
    done: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _deliver_outcomes(
    batch: list[_QueuedWrite], outcomes: list[tuple[bool, Any]], loop: asyncio.AbstractEventLoop
) -> None:
    """In `loop`: hand each of its writes its result or error (one wake-up for the batch)."""
    for queued, (ok, value) in zip(batch, outcomes, strict=True):
        if queued.loop is not loop or queued.done.cancelled():
            continue
        if ok:
            queued.done.set_result(value)
        else:
            queued.done.set_exception(value)


class Transactions:
    """Short transactions of the battle hot path, each a plain function over a sync
    `Connection` (Core statements), run in one piece in a thread of ours, on a connection that
    thread keeps: one thread for writers, one for readers.

    The async drivers cost more than the statements. On SQLite, aiosqlite hands every driver
    call to its thread and back (a cursor, execute, fetch and close for each statement, with
    BEGIN and COMMIT besides), about 60 µs of CPU a hand-off, twenty times what SQLite spends on
    the statement; here a whole transaction is one hand-off. On PostgreSQL, psycopg's async
    connection wakes the event loop for each statement's answer, and SQLAlchemy's async layer
    switches greenlets around each: under load the event loop, which relays the answers, is the
    scarce thing. The blocking driver waits for the server without holding the interpreter.

    One writer thread also means that the writers of a worker queue in arrival order (rather
    than in SQLite's busy handler), and writes that queue while it is busy share a transaction
    and its commit (see `_drain`). Readers run beside it (WAL on SQLite). An in-memory SQLite
    database (a connection of its own per thread) runs on the async engine instead."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sync: Engine | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._is_sqlite = engine.dialect.name == "sqlite"
        if self._is_sqlite and engine.url.database in (None, "", ":memory:"):
            return
        self._sync = _sync_engine_for_threads(engine.url)
        # Each of the two threads keeps its connection: a checkout and check-in of the pool per
        # transaction cost about as much as the transaction.
        self._thread_connection = threading.local()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="arena-db-writer")
        self._queue: list[_QueuedWrite] = []
        self._queue_lock = threading.Lock()
        self._draining = False
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="arena-db-reader")

    def waiting(self) -> int:
        """Writes queued for the writer thread now (a gauge of the metrics)."""
        return len(self._queue)

    async def write(self, work: Callable[[Connection], T], *, to_disk: bool = True) -> T:
        """`work` in a write transaction, committed before this returns.

        `work` must be safe to run twice: when a transaction shared with other writes fails, it
        is rolled back and each of its writes runs again in a transaction of its own. So a work
        function changes nothing but the database through `connection` (no appending to a
        caller's list, no counter moved, no future set), and returns what it read or wrote, so
        that the second run's result stands and the first run leaves no trace.

        `to_disk=False` is for writes that may be lost to a power cut (not to a crash of the
        process): on SQLite the commit then skips its fsync, which is most of its time. Such a
        write is made durable by the next synced commit of any connection (the WAL is one
        sequence of frames), and it must never be acknowledged to anyone on its own."""
        if self._writer is None:
            async with self._engine.begin() as connection:
                return await connection.run_sync(work)
        loop = asyncio.get_running_loop()
        queued = _QueuedWrite(work, to_disk, loop.create_future(), loop)
        with self._queue_lock:
            self._queue.append(queued)
            idle, self._draining = not self._draining, True
        if idle:
            self._writer.submit(self._drain)
        result: T = await queued.done
        return result

    async def read(self, work: Callable[[Connection], T]) -> T:
        """`work` in a read-only transaction."""
        if self._reader is None:
            async with self._engine.connect() as connection:
                return await connection.run_sync(work)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._run, work, False, True)

    def _connection(self, write: bool) -> Connection:
        connection: Connection | None = getattr(self._thread_connection, "connection", None)
        if (
            connection is not None
            and not self._is_sqlite
            and _closed_by_server(connection.connection.driver_connection)
        ):
            # What the pool checks at checkout, which a kept connection does not go through.
            connection.invalidate()
            connection.close()
            connection = None
        if connection is None or connection.closed or connection.invalidated:
            if self._sync is None:
                raise RuntimeError("an in-memory SQLite database has no transaction threads")
            connection = self._sync.connect()
            if write:
                connection.execution_options(**WRITE_TRANSACTION)
            self._thread_connection.connection = connection
        return connection

    def _run(self, work: Callable[[Connection], T], write: bool, to_disk: bool) -> T:
        return self._run_in_one([work], write=write, to_disk=to_disk)[0]

    def _run_in_one(
        self,
        works: list[Callable[[Connection], T]],
        *,
        write: bool,
        to_disk: bool,
        shared: bool = False,
    ) -> list[T]:
        """Each of `works` in turn, in one transaction (`shared` by several callers)."""
        connection = self._connection(write)
        # On SQLite a write that may wait for the disk skips its fsync. The safety level cannot
        # change inside a transaction: around it, on the driver's connection (autocommit, as
        # _sqlite_manual_begin leaves it).
        relaxed = self._is_sqlite and not to_disk
        driver: Any = connection.connection.driver_connection
        if relaxed:
            driver.execute("PRAGMA synchronous=NORMAL")
        try:
            with connection.begin():
                if shared and not self._is_sqlite:
                    connection.exec_driver_sql(_SHARED_LOCK_TIMEOUT)
                return [work(connection) for work in works]
        finally:
            if relaxed:
                driver.execute("PRAGMA synchronous=FULL")

    def _drain(self) -> None:
        """The writer thread's loop: the writes queued meanwhile, together, until none is left.

        Writes that queued while the thread was busy share one transaction, so one commit (and
        one wait for the disk) serves them all: a group commit. Should one of them fail, the
        transaction is rolled back and each runs again in a transaction of its own, so that it
        alone fails. A write is never acknowledged before the commit that holds it.

        On PostgreSQL, the shared transactions of two workers that take the same rows in
        opposite orders (two popular prompts' duplicate counts) would deadlock, and wait for the
        server's `deadlock_timeout` (1 s by default) before it aborts one. A shared transaction
        waits for a row lock 100 ms at the most instead, then runs again write by write, each
        waiting as long as it must."""
        while True:
            with self._queue_lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._draining = False
                    return
            to_disk = any(queued.to_disk for queued in batch)
            outcomes: list[tuple[bool, Any]]
            try:
                results = self._run_in_one(
                    [queued.work for queued in batch],
                    write=True,
                    to_disk=to_disk,
                    shared=len(batch) > 1,
                )
                outcomes = [(True, result) for result in results]
            except Exception as error:
                if len(batch) == 1:
                    outcomes = [(False, error)]
                else:
                    log.info(
                        "a transaction shared by %d writes failed (%s); running each alone",
                        len(batch),
                        type(getattr(error, "orig", None) or error).__name__,
                    )
                    outcomes = [self._outcome(queued) for queued in batch]
            loops = {queued.loop for queued in batch}
            for loop in loops:
                with contextlib.suppress(RuntimeError):  # a loop closed meanwhile
                    loop.call_soon_threadsafe(_deliver_outcomes, batch, outcomes, loop)

    def _outcome(self, queued: _QueuedWrite) -> tuple[bool, Any]:
        try:
            return True, self._run(queued.work, True, queued.to_disk)
        except Exception as error:
            return False, error

    def _close_connection(self) -> None:
        connection: Connection | None = getattr(self._thread_connection, "connection", None)
        if connection is not None:
            connection.close()
            self._thread_connection.connection = None

    def close(self) -> None:
        """Wait for the transactions under way, then close the connections."""
        for executor in (self._writer, self._reader):
            if executor is not None:
                # In the executor's own thread, after what is queued (thread-local connection).
                executor.submit(self._close_connection).result()
                executor.shutdown(wait=True)
        if self._sync is not None:
            self._sync.dispose()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def in_one_transaction(
    url: str, work: Callable[[AsyncSession], Awaitable[T]], *, writes: bool = True
) -> T:
    """`work` in one committed transaction on an engine of its own, for the CLI and start-up
    steps that run outside the app (which keeps one engine for its lifetime). `writes=False`
    for work that only reads: it then never holds SQLite's write lock."""
    engine = make_async_engine(url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            if writes:
                # Work that reads, then writes: on SQLite a deferred transaction would fail at
                # once should a running arena commit in between (_begin_statement).
                await begin_write(session)
            return await work(session)
    finally:
        await engine.dispose()


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
