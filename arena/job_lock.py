"""One worker at a time for a job: a PostgreSQL advisory lock, elsewhere a lease row in job_lock."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import delete, insert, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

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
