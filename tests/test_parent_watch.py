"""Helper processes end with the process that started them, even one killed outright."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import RatingSnapshot
from tests.arena_process import ArenaProcess
from tests.conftest import add_model, make_settings, run_db
from tests.leaderboard.conftest import STRENGTHS, seed_votes, simulated_votes

# The pool's worker answers with its process id; then this process dies without any clean-up.
_FORKED_POOL = """
import multiprocessing, os, signal
from concurrent.futures import ProcessPoolExecutor
from arena.parent_watch import exit_with_parent
pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                           initializer=exit_with_parent)
print(pool.submit(os.getpid).result(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _ends_soon(pids: list[int], timeout: float = 20) -> list[int]:
    """The processes among `pids` still running after `timeout` seconds."""
    processes = []
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_a_pool_worker_ends_when_its_parent_is_killed() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _FORKED_POOL], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == -9, run.stderr
    worker = int(run.stdout.split()[0])
    assert _ends_soon([worker]) == []


@pytest.mark.slow
def test_the_recompute_worker_ends_when_its_server_is_killed(
    tmp_path: Path, sqlite_template: Path
) -> None:
    shutil.copyfile(sqlite_template, tmp_path / "arena.db")
    settings = make_settings(f"sqlite:///{tmp_path / 'arena.db'}", tmp_path, bootstrap_rounds=0)
    for name in STRENGTHS:
        add_model(settings, name, "http://127.0.0.1:9/v1")
    seed_votes(settings.database_url, simulated_votes(STRENGTHS, 60))

    async def snapshots(session: AsyncSession) -> int:
        return int(await session.scalar(select(func.count()).select_from(RatingSnapshot)) or 0)

    # Counted votes and no table yet: the server recomputes at once, in its worker process.
    server = ArenaProcess(settings, tmp_path / "server.log").start()
    try:
        deadline = time.monotonic() + 120
        while run_db(settings, snapshots) == 0:
            assert time.monotonic() < deadline, "the startup recompute never stored a table"
            time.sleep(0.2)
        assert server.process is not None
        helpers = [p.pid for p in psutil.Process(server.process.pid).children(recursive=True)]
        assert helpers, "no recompute worker process"
        server.kill()
        assert _ends_soon(helpers) == []
    finally:
        server.stop()
