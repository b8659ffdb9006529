"""The full recompute at scale with every view (issue: views and the recompute at scale).

    python bench/recompute_views.py                     # a few minutes on 2 cores
    python bench/recompute_views.py --votes 200000

A scratch PostgreSQL database (bench/leaderboard.py's `populate`: --models models, --votes counted
votes, languages, category tags and first-prompt lengths) is recomputed by `run_recompute` in a
fresh process each time, as the server's worker process runs it: loading the counted votes,
every category x method x view the page offers (bootstrap --bootstrap rounds), storing the
snapshots. The baseline, measured in the same run, is the same recompute with the plain view
only (views=False), the tables the page offered before the views; each is run --repeats times,
alternating. It prints wall time, the process's peak resident memory and the ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leaderboard import ADMIN_URL, populate  # noqa: E402  (bench/leaderboard.py)
from scratch import scratch_database  # noqa: E402


def _recompute(url: str, bootstrap: int, views: bool) -> tuple[float, float, int, int]:
    from arena.leaderboard.snapshots import RecomputeConfig, run_recompute

    before = resource.getrusage(resource.RUSAGE_SELF)
    outcome = run_recompute(
        RecomputeConfig(database_url=url, bootstrap_rounds=bootstrap, views=views)
    )
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return outcome.seconds, cpu, outcome.stored, after.ru_maxrss


def timed(url: str, bootstrap: int, views: bool) -> tuple[float, float, float, int, int]:
    """(seconds the recompute reported, its CPU seconds (all threads; the database's own work
    is not in it), wall seconds with the process start, snapshots, peak KiB)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        started = time.perf_counter()
        seconds, cpu, stored, peak = pool.apply(_recompute, (url, bootstrap, views))
        return seconds, cpu, time.perf_counter() - started, stored, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        scratch_database(ADMIN_URL, Path(folder)) as url,
    ):
        started = time.perf_counter()
        populate(url, args.models, args.votes)
        seconds = time.perf_counter() - started
        print(f"data: {args.models} models, {args.votes:,} votes in {seconds:.0f} s")
        timed(url, args.bootstrap, True)  # the first run compiles and caches the Elo kernels
        runs: dict[bool, list[tuple[float, float, float, int, int]]] = {False: [], True: []}
        for _ in range(args.repeats):
            for views in (False, True):
                runs[views].append(timed(url, args.bootstrap, views))
    for views, label in ((False, "plain view only (baseline)"), (True, "every view")):
        best = min(runs[views])
        print(
            f"{label}: {best[3]} snapshots, recompute {best[0]:.2f} s wall, {best[1]:.2f} s CPU"
            f" ({best[2]:.2f} s with process start), peak memory {best[4] / 1024**2:.2f} GiB"
        )
    wall = min(runs[True])[0] / min(runs[False])[0]
    cpu = min(runs[True])[1] / min(runs[False])[1]
    print(f"every view costs {wall:.2f}x the plain view alone in wall time, {cpu:.2f}x in CPU")


if __name__ == "__main__":
    main()
