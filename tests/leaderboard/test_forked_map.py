"""The recompute's tables spread over forked processes (arena/leaderboard/forked_map.py).

The forks run in a fresh interpreter: a test process runs servers in threads, and forked_map
never forks from a process with other threads (it runs everything here instead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.leaderboard.forked_map import balanced_groups, forked_map
from arena.models import RatingSnapshot
from tests.conftest import Arena
from tests.leaderboard.conftest import add_models, seed_votes, standard_votes

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(autouse=True)
def linux_only() -> None:
    if not sys.platform.startswith("linux"):
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs on Linux, where the recompute forks")
        pytest.skip("the recompute forks on Linux only; elsewhere it runs on one process")


def test_groups_balance_the_costs_and_keep_every_piece_once() -> None:
    costs = [9.0, 1.0, 1.0, 1.0, 5.0, 4.0, 3.0, 2.0]
    groups = balanced_groups(costs, 2)
    assert sorted(p for group in groups for p in group) == list(range(len(costs)))
    assert all(group == sorted(group) for group in groups)
    loads = sorted(sum(costs[p] for p in group) for group in groups)
    assert loads == [13.0, 13.0]
    assert balanced_groups([1.0], 4) == [[0]]
    assert balanced_groups([], 2) == []


def test_with_other_threads_running_the_work_stays_here() -> None:
    # pytest's process runs threads (servers, xdist); forking it could copy a held lock.
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        pids = forked_map(lambda piece: os.getpid(), [1.0] * 4, processes=2)
    finally:
        stop.set()
        thread.join()
    assert pids == [os.getpid()] * 4


def test_pieces_run_in_two_processes_in_order() -> None:
    done = run_python(
        """
        import json, logging, os
        logging.basicConfig(level=logging.INFO)
        from arena.leaderboard.forked_map import forked_map
        parent = os.getpid()
        out = forked_map(lambda i: (i * i, os.getpid() == parent), [1.0] * 10, processes=2)
        print(json.dumps(out))
        """
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [square for square, _ in results] == [i * i for i in range(10)]
    here = [in_parent for _, in_parent in results]
    assert 0 < sum(here) < 10  # some pieces ran in the forked child
    assert "10 pieces of work ran on 2 processes" in done.stderr


def test_a_daemonic_pool_worker_runs_the_pieces_itself() -> None:
    # multiprocessing.Pool's workers may not have children; the server's worker may.
    done = run_python(
        """
        import json, multiprocessing, os
        from arena.leaderboard.forked_map import forked_map

        def inside(_):
            me = os.getpid()
            return forked_map(lambda i: os.getpid() == me, [1.0] * 4, processes=2)

        with multiprocessing.get_context("fork").Pool(1) as pool:
            print(json.dumps(pool.apply(inside, (0,))))
        """
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [True] * 4


def test_a_child_that_dies_has_its_pieces_run_here() -> None:
    done = run_python(
        """
        import json, os
        from arena.leaderboard.forked_map import forked_map
        parent = os.getpid()

        def work(i):
            if os.getpid() != parent:
                os._exit(3)  # as if killed for lack of memory
            return i + 100

        print(json.dumps(forked_map(work, [1.0] * 6, processes=2)))
        """
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [100, 101, 102, 103, 104, 105]
    assert "a forked process failed" in done.stderr


def _newest_tables(arena: Arena) -> dict[tuple[str, str, str], dict[str, object]]:
    """The newest snapshot of each (method, category, view): its rows, extras, params, hash."""

    async def work(session: AsyncSession) -> list[RatingSnapshot]:
        return list(await session.scalars(select(RatingSnapshot).order_by(RatingSnapshot.id)))

    return {
        (snapshot.method, snapshot.category, snapshot.view): {
            "rows": snapshot.rows,
            "extras": snapshot.extras,
            "params": snapshot.params,
            "hash": snapshot.vote_set_hash,
        }
        for snapshot in arena.db(work)
    }


def test_two_processes_store_the_tables_one_stores(quiet_arena: Arena) -> None:
    add_models(quiet_arena)
    quiet_arena.add_model("newcomer", "http://127.0.0.1:9/v1", organization="New Co")
    seed_votes(quiet_arena.settings.database_url, standard_votes())
    stored = []
    for processes in (1, 2):
        done = run_python(
            f"""
            import logging
            logging.basicConfig(level=logging.INFO)
            from arena.leaderboard.snapshots import RecomputeConfig, run_recompute
            outcome = run_recompute(
                RecomputeConfig(
                    database_url={quiet_arena.settings.database_url!r},
                    bootstrap_rounds=20,
                    processes={processes},
                )
            )
            assert outcome.ran and outcome.stored and not outcome.failed, outcome
            """
        )
        assert done.returncode == 0, done.stderr
        if processes == 2:
            assert "ran on 2 processes" in done.stderr
        else:
            assert "ran on" not in done.stderr
        stored.append(_newest_tables(quiet_arena))
    one, two = stored
    assert len(one) > 20
    assert one == two


def test_the_setting_reaches_the_recompute(arena_factory: Callable[..., Arena]) -> None:
    from arena.leaderboard.snapshots import RecomputeConfig

    arena = arena_factory(recompute_processes=1)
    assert RecomputeConfig.from_settings(arena.settings).processes == 1
