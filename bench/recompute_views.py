"""The full recompute at scale with every view (issue: views and the recompute at scale).

    python bench/recompute_views.py                     # a few minutes on 2 cores
    python bench/recompute_views.py --votes 200000

A scratch PostgreSQL database (bench/leaderboard.py's `populate`: --models models, --votes
counted votes, languages, category tags, first-prompt lengths and, unless --no-judge, a judge's
labels; with --duplicates, a share of the votes held back as duplicate prompts) is recomputed
by `run_recompute` in a fresh process each time, as the server's worker process runs it:
loading the counted votes, every category x method x view the page offers (bootstrap
--bootstrap rounds), storing the
snapshots. The baseline, measured in the same run, is the same recompute with the plain view
only (views=False), the tables the page offered before the views; each is run --repeats times,
alternating, on --processes processes (the setting's default), and the every-view recompute
once more on one process, to show what the forked process buys. It prints wall time, CPU
(the forked child's included), the peak resident memory of the process and of its child, and
the ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leaderboard import ADMIN_URL, populate  # noqa: E402  (bench/leaderboard.py)
from scratch import scratch_database  # noqa: E402

from arena.config import Settings  # noqa: E402

Run = tuple[float, float, float, int, int, int]


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _recompute(url: str, bootstrap: int, views: bool, processes: int) -> tuple[Any, ...]:
    from arena.leaderboard.snapshots import RecomputeConfig, run_recompute

    before = _cpu(resource.getrusage(resource.RUSAGE_SELF))
    before_children = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))
    outcome = run_recompute(
        RecomputeConfig(
            database_url=url, bootstrap_rounds=bootstrap, views=views, processes=processes
        )
    )
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = _cpu(own) - before + _cpu(children) - before_children
    return outcome.seconds, cpu, outcome.stored, own.ru_maxrss, children.ru_maxrss


def timed(url: str, bootstrap: int, views: bool, processes: int) -> Run:
    """(seconds the recompute reported, its CPU seconds (all threads and the forked child; the
    database's own work is not in it), wall seconds with the process start, snapshots, peak KiB
    of the process, peak KiB of its forked child)."""
    # A fresh process as the server's recompute worker is (a Pool's daemonic one could not fork).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        started = time.perf_counter()
        seconds, cpu, stored, peak, child_peak = pool.submit(
            _recompute, url, bootstrap, views, processes
        ).result()
        return seconds, cpu, time.perf_counter() - started, stored, peak, child_peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--no-judge",
        action="store_true",
        help="no judge labels: without the judged categories and the refusals views",
    )
    parser.add_argument(
        "--duplicates",
        type=float,
        default=0.0,
        help="this share of the votes held back for the duplicate-prompt limit alone: the"
        " tables without deduplication are stored too (twice the tables)",
    )
    parser.add_argument(
        "--processes", type=int, default=Settings.model_fields["recompute_processes"].default
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        scratch_database(ADMIN_URL, Path(folder)) as url,
    ):
        started = time.perf_counter()
        populate(url, args.models, args.votes, judged=not args.no_judge, duplicates=args.duplicates)
        seconds = time.perf_counter() - started
        labels = "no judge labels" if args.no_judge else "a judge's labels on every battle"
        held = f", {args.duplicates:.0%} held back as duplicates" if args.duplicates else ""
        print(
            f"data: {args.models} models, {args.votes:,} votes, {labels}{held}, in {seconds:.0f} s"
        )
        # The first run compiles and caches the Elo kernels.
        timed(url, args.bootstrap, True, args.processes)
        kinds = {
            "plain view only (baseline)": (False, args.processes),
            "every view": (True, args.processes),
            "every view, one process": (True, 1),
        }
        runs: dict[str, list[Run]] = {label: [] for label in kinds}
        for _ in range(args.repeats):
            for label, (views, processes) in kinds.items():
                runs[label].append(timed(url, args.bootstrap, views, processes))
    for label, (_, processes) in kinds.items():
        best = min(runs[label])
        print(
            f"{label}: {best[3]} snapshots on {processes} process(es), recompute {best[0]:.2f} s"
            f" wall, {best[1]:.2f} s CPU ({best[2]:.2f} s with process start), peak memory"
            f" {best[4] / 1024**2:.2f} GiB (forked child {best[5] / 1024**2:.2f} GiB)"
        )
    baseline, every, one = (min(runs[label]) for label in kinds)
    print(
        f"every view costs {every[0] / baseline[0]:.2f}x the plain view alone in wall time,"
        f" {every[1] / baseline[1]:.2f}x in CPU; on one process it takes"
        f" {one[0] / every[0]:.2f}x as long"
    )


if __name__ == "__main__":
    main()
