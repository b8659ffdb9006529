"""One worker at a time for a job: a PostgreSQL advisory lock, elsewhere a lease row in job_lock;
and once a period across workers for periodic jobs: a lease row that expires."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import JobLock, utcnow

log = logging.getLogger(__name__)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock, derived from the job's name."""
    return int.from_bytes(hashlib.sha256(f"arena:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def _advisory_lock(engine: Engine, name: str) -> Iterator[bool]:
    # Session-level advisory locks belong to one connection: hold that connection for the whole job,
    # so a crashed worker's lock vanishes with its connection.
    key = advisory_key(name)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        got = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


@contextmanager
def _lease_row(engine: Engine, name: str, lease: timedelta) -> Iterator[bool]:
    holder = uuid.uuid4().hex
    now = utcnow()
    got = False
    try:
        with engine.begin() as conn:
            conn.execute(insert(JobLock).values(name=name, holder=holder, expires_at=now + lease))
        got = True
    except IntegrityError:
        # A lease left by a worker that died is taken over once it has expired.
        with engine.begin() as conn:
            taken = conn.execute(
                update(JobLock)
                .where(JobLock.name == name, JobLock.expires_at < now)
                .values(holder=holder, expires_at=now + lease)
            )
            got = taken.rowcount == 1
    try:
        yield got
    finally:
        if got:
            with engine.begin() as conn:
                conn.execute(delete(JobLock).where(JobLock.name == name, JobLock.holder == holder))


@contextmanager
def hold_job_lock(
    engine: Engine, name: str, *, lease: timedelta = timedelta(minutes=30)
) -> Iterator[bool]:
    """Yield True if this caller holds the job `name` until the block ends, False if another does.

    PostgreSQL: pg_try_advisory_lock on a connection kept for the block. Other databases: a row in
    job_lock with an expiry (`lease`), so a worker that died does not hold the job forever.
    """
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, name) as got:
            yield got
    else:
        with _lease_row(engine, name, lease) as got:
            yield got


@dataclass(frozen=True)
class PeriodClaim:
    """A period claimed for a periodic job; `previous_start` is when the period before began
    (in whichever worker ran it), None on the job's first run."""

    previous_start: datetime | None


async def claim_period(session: AsyncSession, name: str, period: timedelta) -> PeriodClaim | None:
    """The period if this caller may run the periodic job `name` now, None if another worker
    claimed it. The claim is a lease row whose expiry is the end of the period, taken in one
    statement (an upsert that only replaces an expired lease), so of several instances waking
    together exactly one runs it; it commits or rolls back with the caller's transaction.
    """
    holder = uuid.uuid4().hex
    now = utcnow()
    previous_end = await session.scalar(select(JobLock.expires_at).where(JobLock.name == name))
    dialect = session.get_bind().dialect.name
    upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    claim = (
        upsert(JobLock)
        .values(name=name, holder=holder, expires_at=now + period)
        .on_conflict_do_update(
            index_elements=[JobLock.name],
            set_={"holder": holder, "expires_at": now + period},
            where=JobLock.expires_at <= now,
        )
        .returning(JobLock.holder)
    )
    if (await session.scalar(claim)) != holder:
        return None
    return PeriodClaim(previous_end - period if previous_end is not None else None)
