"""The migrations build exactly the tables the code declares, in one line of history."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from arena import migrate


def test_one_head() -> None:
    config = migrate.alembic_config("sqlite://")
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"migrations branched: heads {heads}; merge them"


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    # database_url is already migrated to head; check() raises if the models declare anything more.
    migrate.check(database_url)
