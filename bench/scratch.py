"""Throwaway databases for the benchmarks: a SQLite file in a folder, or a new database on a
local PostgreSQL server that is dropped afterwards, whatever happens."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch_database(postgresql_server: str | None, folder: Path) -> Iterator[str]:
    """The URL of an empty database: SQLite in `folder` when no PostgreSQL server URL is given."""
    if not postgresql_server:
        yield f"sqlite:///{folder / 'arena.db'}"
        return
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from arena.db import make_sync_engine

    server = make_url(postgresql_server)
    if server.host not in ("127.0.0.1", "localhost"):
        raise SystemExit("the benchmarks only create databases on a server at 127.0.0.1")
    name = f"arena_bench_{uuid.uuid4().hex[:10]}"
    admin = make_sync_engine(postgresql_server).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
