"""Applying and checking the Alembic migrations from code (the CLI, `make run`, the tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from arena.db import make_sync_engine

_PACKAGE_DIR = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    # From a checkout the files sit beside the package; from a wheel they are inside it.
    for root in (_PACKAGE_DIR.parent, _PACKAGE_DIR):
        if (root / "alembic.ini").exists() and (root / "migrations").is_dir():
            config = Config(str(root / "alembic.ini"))
            config.set_main_option("script_location", str(root / "migrations"))
            config.attributes["database_url"] = database_url
            return config
    raise FileNotFoundError("the migrations folder is missing from this installation")


@dataclass(frozen=True)
class Upgrade:
    """The database's revision before and after an upgrade; None before is an empty database."""

    before: str | None
    after: str | None

    @property
    def created(self) -> bool:
        return self.before is None and self.after is not None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def current_revision(database_url: str) -> str | None:
    engine = make_sync_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> Upgrade:
    before = current_revision(database_url)
    command.upgrade(alembic_config(database_url), revision)
    return Upgrade(before, current_revision(database_url))


def check(database_url: str) -> None:
    """Raise if the ORM tables and the migrations disagree."""
    command.check(alembic_config(database_url))


def generate(database_url: str, message: str) -> None:
    command.revision(alembic_config(database_url), message=message, autogenerate=True)
