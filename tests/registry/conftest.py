"""Registry fixtures: arenas shared by a module's tables of cases that need no fresh database."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Arena, make_settings, start_arena


@pytest.fixture(scope="module")
def shared_arena_factory(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Arena]]:
    """An arena per set of settings, on SQLite, kept for the whole module.

    For tables of inputs whose answers are decided before anything is stored (validation, the
    SSRF guard, failed probes); flows that change the database use the per-test `arena`."""
    started: dict[tuple[tuple[str, Any], ...], Arena] = {}

    def start(**overrides: Any) -> Arena:
        key = tuple(sorted(overrides.items()))
        if key not in started:
            folder = tmp_path_factory.mktemp("shared")
            shutil.copyfile(sqlite_template, folder / "arena.db")
            settings = make_settings(f"sqlite:///{folder / 'arena.db'}", folder, **overrides)
            started[key] = start_arena(settings)
        return started[key]

    yield start
    for arena in started.values():
        arena.server.stop()
