"""Alembic environment: runs migrations on the arena's database with a plain (sync) driver."""

from __future__ import annotations

from alembic import context

from arena.config import Settings
from arena.db import is_sqlite, make_sync_engine
from arena.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    given = config.attributes.get("database_url")
    return str(given) if given else Settings().database_url


def run_migrations_offline() -> None:
    url = _database_url()
    context.configure(
        url=url, target_metadata=target_metadata, render_as_batch=is_sqlite(url), literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _database_url()
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=is_sqlite(url)
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_sync_engine(url)
    with engine.connect() as conn:
        context.configure(
            connection=conn, target_metadata=target_metadata, render_as_batch=is_sqlite(url)
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
