"""This worker among the workers sharing the database, and settling the turns of those gone.

A worker claims each turn it streams under its id (`battle.streamed_by`). Should it die mid-turn
(SIGKILL, a crash, the host lost), the turn stays `streaming`, and the visitor asking for it
again would wait for the stale-turn timeout. So a worker holds a lock named by its id for as
long as it runs, one that the operating system or the database server releases when the
process dies, and lists itself in `worker_instance` only while it holds that lock. A worker
starting up takes, one by one, the locks of the workers listed: a lock it gets belongs to a
worker that is gone, whose streaming turns it ends as failed before it serves a request. A
live worker's lock cannot be taken, so its turns are left alone.

- PostgreSQL: a session advisory lock on a connection kept for the purpose; the server
  releases it when the connection ends, which the process's death ends. Should the connection
  break while the worker lives (a database restart), the worker takes its lock again within
  `_KEEP_SECONDS`, and lists itself again if it was taken for gone meanwhile.
- SQLite (one host): `flock` on a file per worker beside the database; the kernel releases it
  when the process exits.

A worker that stops cleanly unlists itself, unless it cut turns short (the next worker to
start settles them). An in-memory SQLite database has one process: nothing to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from arena.db import Transactions
from arena.job_lock import advisory_key
from arena.models import WorkerInstance

log = logging.getLogger(__name__)

# How often a worker checks that it still holds its lock (PostgreSQL) or retries listing itself.
_KEEP_SECONDS: Final = 5.0

# Ends the streaming turns of a gone worker, in a write transaction; how many.
SettleTurns = Callable[[Connection, str], int]


class WorkerLocks(Protocol):
    async def take(self, worker: str) -> bool:
        """Take `worker`'s lock without waiting; False when another process holds it."""
        ...

    async def release(self, worker: str) -> None: ...

    async def holding(self, worker: str) -> bool:
        """Whether the lock taken for `worker` is still this process's."""
        ...

    async def close(self) -> None:
        """Release every lock this process holds."""
        ...


class AdvisoryLocks:
    """PostgreSQL session advisory locks on one connection of their own."""

    def __init__(self, engine: AsyncEngine) -> None:
        # Not from the app's pool: closing the connection must end the session and its locks.
        self._engine = create_async_engine(engine.url, poolclass=NullPool)
        self._connection: AsyncConnection | None = None
        self._held: set[str] = set()

    async def _connected(self) -> AsyncConnection:
        if self._connection is None:
            connection = await self._engine.connect()
            self._connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            self._held.clear()
        return self._connection

    async def _lost(self) -> None:
        connection, self._connection = self._connection, None
        self._held.clear()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()

    async def _ask(self, query: str, worker: str) -> bool:
        connection = await self._connected()
        try:
            key = advisory_key(f"worker:{worker}")
            return bool(await connection.scalar(text(query), {"key": key}))
        except Exception:
            await self._lost()
            raise

    async def take(self, worker: str) -> bool:
        taken = await self._ask("SELECT pg_try_advisory_lock(:key)", worker)
        if taken:
            self._held.add(worker)
        return taken

    async def release(self, worker: str) -> None:
        if worker in self._held:
            self._held.discard(worker)
            await self._ask("SELECT pg_advisory_unlock(:key)", worker)

    async def holding(self, worker: str) -> bool:
        if worker not in self._held or self._connection is None:
            return False
        try:
            await self._connection.scalar(text("SELECT 1"))
        except Exception:
            await self._lost()
            return False
        return True

    async def close(self) -> None:
        await self._lost()
        await self._engine.dispose()


class FileLocks:
    """`flock` on one file per worker in a folder beside the SQLite database."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._held: dict[str, int] = {}

    def _path(self, worker: str) -> Path:
        return self._folder / f"{worker}.lock"

    async def take(self, worker: str) -> bool:
        self._folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self._path(worker), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._held[worker] = descriptor
        return True

    async def release(self, worker: str) -> None:
        descriptor = self._held.pop(worker, None)
        if descriptor is not None:
            # Removed while still locked: a process that opened it meanwhile fails to lock it.
            with contextlib.suppress(FileNotFoundError):
                self._path(worker).unlink()
            os.close(descriptor)

    async def holding(self, worker: str) -> bool:
        return worker in self._held

    async def close(self) -> None:
        for worker in list(self._held):
            await self.release(worker)


def worker_locks(engine: AsyncEngine) -> WorkerLocks | None:
    """The kind of lock for this database; None for an in-memory SQLite one."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLocks(engine)
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    path = Path(database).resolve()
    return FileLocks(path.with_name(f"{path.name}-workers"))


class Workers:
    """This worker's entry among the workers, kept while it runs (see the module docstring)."""

    def __init__(self, transactions: Transactions, locks: WorkerLocks | None) -> None:
        self.id = uuid.uuid4().hex
        self._transactions = transactions
        self._locks = locks
        self._listed = False
        self._settle: SettleTurns | None = None  # until the gone workers' turns are settled
        self._keeper: asyncio.Task[None] | None = None

    @classmethod
    def for_engine(cls, engine: AsyncEngine, transactions: Transactions) -> Workers:
        return cls(transactions, worker_locks(engine))

    async def start(self, settle: SettleTurns) -> None:
        """List this worker, then settle the turns of the workers gone: before the first request,
        so that a visitor asking for such a turn is answered at once."""
        if self._locks is None:
            return
        self._settle = settle
        await self._join()
        self._keeper = asyncio.create_task(self._keep(), name="worker-lock")

    async def _join(self) -> None:
        """List this worker; the first time it is listed, settle the turns of the gone ones (a
        database down at start-up delays both)."""
        await self._list()
        if self._listed and self._settle is not None:
            settle, self._settle = self._settle, None
            try:
                await self.settle_gone(settle)
            except Exception:
                log.exception("the turns of the workers gone could not be settled")

    @property
    def _held_locks(self) -> WorkerLocks:
        if self._locks is None:
            raise RuntimeError("this database keeps no worker locks (an in-memory SQLite file)")
        return self._locks

    async def _list(self) -> None:
        """Take this worker's lock, then list it: never listed without the lock held."""
        try:
            if not await self._held_locks.take(self.id):
                # Held by another connection of ours, lost: it is released as the server notices.
                log.warning("worker %s: its lock is still held; trying again soon", self.id)
                return
            await self._transactions.write(self._insert_row)
        except Exception:
            log.exception("worker %s: could not list itself; trying again soon", self.id)
            return
        self._listed = True

    def _insert_row(self, connection: Connection) -> None:
        listed = connection.scalar(select(WorkerInstance.id).where(WorkerInstance.id == self.id))
        if listed is None:
            connection.execute(
                insert(WorkerInstance).values(
                    id=self.id, host=socket.gethostname(), pid=os.getpid()
                )
            )

    async def _keep(self) -> None:
        locks = self._held_locks
        while True:
            await asyncio.sleep(_KEEP_SECONDS)
            if self._listed and await locks.holding(self.id):
                continue
            if self._listed:
                log.warning("worker %s: lost its lock (the database connection?)", self.id)
            self._listed = False
            await self._join()

    async def settle_gone(self, settle: SettleTurns) -> dict[str, int]:
        """End the streaming turns of every listed worker that is gone, and unlist it; the
        number of turns settled by worker."""
        locks = self._held_locks
        others = await self._transactions.read(
            lambda connection: list(
                connection.scalars(select(WorkerInstance.id).where(WorkerInstance.id != self.id))
            )
        )
        settled: dict[str, int] = {}
        for worker in others:
            try:
                if not await locks.take(worker):
                    continue  # alive, or being settled by another worker starting now
                try:
                    settled[worker] = await self._transactions.write(
                        functools.partial(_settle_and_unlist, worker=worker, settle=settle)
                    )
                finally:
                    await locks.release(worker)
            except Exception:
                log.exception("the turns of worker %s, gone, could not be settled", worker)
                continue
            log.warning(
                "worker %s is gone: %d turn(s) it was streaming ended as failed",
                worker,
                settled[worker],
            )
        return settled

    async def stop(self, *, turns_cut_short: bool) -> None:
        """Unlist this worker and release its lock. With turns cut short it stays listed, so
        that the next worker to start settles them."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._locks is None:
            return
        if self._listed and not turns_cut_short:
            try:
                await self._transactions.write(
                    lambda connection: connection.execute(
                        delete(WorkerInstance).where(WorkerInstance.id == self.id)
                    )
                )
            except Exception:
                log.exception("worker %s: could not unlist itself", self.id)
        await self._locks.close()


def _settle_and_unlist(connection: Connection, *, worker: str, settle: SettleTurns) -> int:
    settled = settle(connection, worker)
    connection.execute(delete(WorkerInstance).where(WorkerInstance.id == worker))
    return settled
