"""`arena ratings recompute`: the same job from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from arena.db import make_sync_engine
from arena.job_lock import hold_job_lock
from arena.leaderboard.snapshots import JOB_NAME
from tests.conftest import Arena
from tests.leaderboard.conftest import (
    STRENGTHS,
    add_models,
    latest_board,
    seed_votes,
    simulated_votes,
)

ARENA = Path(sys.executable).parent / "arena"


def _recompute(arena: Arena, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    variables = {
        **os.environ,
        "ARENA_DATABASE_URL": arena.settings.database_url,
        "ARENA_DATA_DIR": str(cwd),
        "ARENA_BOOTSTRAP_ROUNDS": "0",
        **env,
    }
    return subprocess.run(
        [str(ARENA), "ratings", "recompute"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=variables,
        check=False,
    )


def test_recompute_command(quiet_arena: Arena, tmp_path: Path) -> None:
    add_models(quiet_arena)
    seed_votes(quiet_arena.settings.database_url, simulated_votes(STRENGTHS, 80))

    engine = make_sync_engine(quiet_arena.settings.database_url)
    try:
        with hold_job_lock(engine, JOB_NAME):
            busy = _recompute(quiet_arena, tmp_path)
    finally:
        engine.dispose()
    assert busy.returncode == 1 and "another worker is recomputing" in busy.stderr

    broken = _recompute(quiet_arena, tmp_path, ARENA_ANCHOR="not-an-anchor")
    message = " ".join(broken.stderr.split())
    assert broken.returncode == 2
    assert "anchor must look like MODEL=RATING" in message and "last good snapshots stay" in message
    with quiet_arena.client() as client:
        assert client.get("/api/leaderboard").json()["snapshot"] is None

    done = _recompute(quiet_arena, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "from 80 counted votes" in done.stdout
    with quiet_arena.client() as client:
        body = latest_board(client)
    assert body["n_battles"] == 80 and len(body["models"]) == 4
