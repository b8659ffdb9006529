"""The hot path's short transactions, on SQLite and on PostgreSQL: writes queued together share
one commit, and a failing write fails alone."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from arena.db import Transactions, make_async_engine, make_sync_engine

WAITING = 5


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with one table of its own, `item`."""
    url = f"sqlite:///{tmp_path / 'transactions.db'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_database")
    engine = make_sync_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS item"))
        connection.execute(
            text("CREATE TABLE item (name TEXT PRIMARY KEY, hits INTEGER NOT NULL DEFAULT 0)")
        )
    yield url
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE item"))
    engine.dispose()


@asynccontextmanager
async def transactions_on(url: str) -> AsyncIterator[Transactions]:
    """The battle path's transaction threads on `url`, closed at the end."""
    engine = make_async_engine(url)
    transactions = Transactions(engine)
    try:
        yield transactions
    finally:
        await asyncio.to_thread(transactions.close)
        await engine.dispose()


def _committed(url: str) -> list[str]:
    """The rows another connection sees: only what is committed."""
    engine = make_sync_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(text("SELECT name FROM item ORDER BY name")))
    finally:
        engine.dispose()


def _insert(
    name: str, seen: list[list[str]] | None = None, url: str | None = None
) -> Callable[[Connection], str]:
    def work(connection: Connection) -> str:
        connection.execute(text("INSERT INTO item (name) VALUES (:name)"), {"name": name})
        if seen is not None and url is not None:
            seen.append(_committed(url))
        return name

    return work


async def _with_writer_busy(
    transactions: Transactions,
    queue: Callable[[], list[asyncio.Task[str]]],
    meanwhile: Callable[[list[asyncio.Task[str]]], object] = lambda tasks: None,
) -> tuple[str, list[asyncio.Task[str]]]:
    """Hold the writer thread in a first write while `queue` queues more behind it, then
    `meanwhile` runs."""
    entered, release = threading.Event(), threading.Event()

    def first(connection: Connection) -> str:
        connection.execute(text("INSERT INTO item (name) VALUES ('first')"))
        entered.set()
        release.wait(10)
        return "first"

    first_task = asyncio.create_task(transactions.write(first))
    assert await asyncio.to_thread(entered.wait, 10), "the writer thread never ran `first`"
    tasks = queue()
    # Each task queues its write when it first runs, which is before this one runs again.
    await asyncio.sleep(0)
    meanwhile(tasks)
    await asyncio.sleep(0)
    release.set()
    return await first_task, tasks


def test_writes_queued_together_share_one_transaction(url: str) -> None:
    seen: list[list[str]] = []

    async def run() -> list[str]:
        async with transactions_on(url) as transactions:
            names = [f"queued-{i}" for i in range(WAITING)]
            first, tasks = await _with_writer_busy(
                transactions,
                lambda: [
                    asyncio.create_task(transactions.write(_insert(name, seen, url)))
                    for name in names
                ],
            )
            assert first == "first"
            return list(await asyncio.gather(*tasks))

    names = asyncio.run(run())
    assert names == [f"queued-{i}" for i in range(WAITING)]
    # Inside the shared transaction, nothing of the queued writes was committed yet...
    assert seen == [["first"]] * WAITING
    # ...and once each write returned, all of them were.
    assert _committed(url) == sorted(["first", *names])


def test_a_failing_write_fails_alone(url: str) -> None:

    def failing(connection: Connection) -> str:
        connection.execute(text("INSERT INTO item (name) VALUES ('failing')"))
        raise ValueError("this write fails")

    async def run() -> list[str | BaseException]:
        async with transactions_on(url) as transactions:
            _, tasks = await _with_writer_busy(
                transactions,
                lambda: [
                    asyncio.create_task(transactions.write(_insert("before"))),
                    asyncio.create_task(transactions.write(failing)),
                    asyncio.create_task(transactions.write(_insert("after"))),
                    # A duplicate key: the database refuses it, and only it.
                    asyncio.create_task(transactions.write(_insert("before"))),
                ],
            )
            return list(await asyncio.gather(*tasks, return_exceptions=True))

    before, failed, after, duplicate = asyncio.run(run())
    assert (before, after) == ("before", "after")
    assert isinstance(failed, ValueError)
    assert "UNIQUE constraint failed" in str(duplicate) or "duplicate key" in str(duplicate)
    assert _committed(url) == ["after", "before", "first"]


def test_a_cancelled_caller_does_not_stop_the_others(url: str) -> None:

    async def run() -> str:
        async with transactions_on(url) as transactions:
            _, tasks = await _with_writer_busy(
                transactions,
                lambda: [
                    asyncio.create_task(transactions.write(_insert("abandoned"))),
                    asyncio.create_task(transactions.write(_insert("awaited"))),
                ],
                meanwhile=lambda tasks: tasks[0].cancel(),
            )
            with pytest.raises(asyncio.CancelledError):
                await tasks[0]
            return await tasks[1]

    assert asyncio.run(run()) == "awaited"
    # The write was queued: cancelling the wait for it does not take it back.
    assert _committed(url) == ["abandoned", "awaited", "first"]


def test_two_workers_writing_the_same_rows_in_opposite_orders_lose_nothing(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers' shared transactions that update the same two rows in opposite orders: on
    PostgreSQL they would deadlock, but a shared transaction waits for a row lock only briefly,
    so they give up before the server's deadlock detector has to step in; their writes then run
    again one by one, and every write is applied once. (On SQLite the second waits for the
    first's lock.)"""
    caplog.set_level(logging.INFO, logger="arena.db")
    for name in ("x", "y"):
        asyncio.run(_write_once(url, _insert(name)))

    # On PostgreSQL both shared transactions hold their first row before either asks for its
    # second; on SQLite the second worker waits for the first's lock, so nothing can meet.
    both_hold_a_row = threading.Barrier(2) if url.startswith("postgresql") else None
    met: set[str] = set()

    def bump(name: str, worker: str) -> Callable[[Connection], str]:
        def work(connection: Connection) -> str:
            connection.execute(
                text("UPDATE item SET hits = hits + 1 WHERE name = :name"), {"name": name}
            )
            if both_hold_a_row is not None and worker not in met:
                met.add(worker)
                both_hold_a_row.wait(10)
            return name

        return work

    release = threading.Event()
    holding = threading.Semaphore(0)

    def hold(connection: Connection) -> str:
        holding.release()
        release.wait(10)
        return "held"

    async def run() -> list[str]:
        async with transactions_on(url) as first, transactions_on(url) as second:
            holds = [asyncio.create_task(worker.write(hold)) for worker in (first, second)]
            # On SQLite the second `hold` waits for the first's lock before it can begin.
            for _ in holds if both_hold_a_row is not None else holds[:1]:
                assert await asyncio.to_thread(holding.acquire, True, 10), "a writer never held"
            crossing = [
                asyncio.create_task(first.write(bump("x", "first"))),
                asyncio.create_task(second.write(bump("y", "second"))),
                asyncio.create_task(first.write(bump("y", "first"))),
                asyncio.create_task(second.write(bump("x", "second"))),
            ]
            await asyncio.sleep(0)  # all four are queued, two behind each writer's `hold`
            release.set()
            await asyncio.gather(*holds)
            return list(await asyncio.gather(*crossing))

    assert asyncio.run(run()) == ["x", "y", "y", "x"]
    engine = make_sync_engine(url)
    try:
        with engine.connect() as connection:
            hits = dict(connection.execute(text("SELECT name, hits FROM item")).all())
    finally:
        engine.dispose()
    assert hits == {"x": 2, "y": 2}
    fell_back = [r.getMessage() for r in caplog.records if "running each alone" in r.getMessage()]
    if url.startswith("postgresql"):
        assert fell_back and all("LockNotAvailable" in message for message in fell_back)
        assert not any("Deadlock" in message for message in fell_back)
    else:
        assert not fell_back


async def _write_once(url: str, work: Callable[[Connection], str]) -> str:
    async with transactions_on(url) as transactions:
        return await transactions.write(work)
