"""`arena ratings compute` end to end against arena-rank's whole process, on one CSV file.

    pip install -e '.[bench]'      # arena-rank
    python bench/ratings_cli.py    # about a minute on 2 cores

Both are timed as a person runs them: a new Python process that imports what it needs, reads the
same CSV file of simulated battles (100 models, 2,000,000 battles, 20% ties; bench/ratings.py's
simulation), fits Bradley-Terry with sandwich intervals and writes the table as CSV to a file.
arena-rank's process is the shortest script its documentation suggests (pandas.read_csv,
PairDataset.from_pandas, BradleyTerry.compute_ratings_and_cis). Each is run --repeats times;
the best wall time and its CPU time (user + system, all threads) are printed, with the ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ratings import simulate  # bench/ratings.py

ARENA_RANK = """
import sys
import numpy as np
import pandas as pd
from arena_rank.models.bradley_terry import BradleyTerry
from arena_rank.utils.data_utils import PairDataset
battles = pd.read_csv(sys.argv[1])
dataset = PairDataset.from_pandas(battles)
result = BradleyTerry(len(dataset.competitors)).compute_ratings_and_cis(dataset)
pd.DataFrame(
    {
        "rating": np.asarray(result["ratings"]),
        "ci_lower": np.asarray(result["rating_lower"]),
        "ci_upper": np.asarray(result["rating_upper"]),
    },
    index=pd.Index(result["competitors"], name="model"),
).to_csv(sys.argv[2])
"""

OURS = """
import sys
from arena.launcher import main
out = sys.argv.pop()
sys.argv = ["arena", "ratings", "compute", "--battles", sys.argv[1], "--format", "csv"]
sys.stdout = open(out, "w")
main()
"""


def run(script: str, *args: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (children's user + system) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script, *args], check=True, env=os.environ.copy())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def best(script: str, repeats: int, *args: str) -> tuple[float, float]:
    return min((run(script, *args) for _ in range(repeats)), key=lambda t: t[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--battles", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "battles.csv"
        battles, _ = simulate(args.models, args.battles, 0)
        battles.to_csv(path, index=False)
        print(f"{args.battles:,} battles, {args.models} models: {path.stat().st_size / 1e6:.0f} MB")
        # One untimed run each warms the file cache and arena-rank's JIT cache, if it keeps one.
        run(ARENA_RANK, str(path), str(Path(folder) / "theirs.csv"))
        run(OURS, str(path), str(Path(folder) / "ours.csv"))
        theirs = best(ARENA_RANK, args.repeats, str(path), str(Path(folder) / "theirs.csv"))
        ours = best(OURS, args.repeats, str(path), str(Path(folder) / "ours.csv"))
        empty = best("pass", args.repeats)
    print(f"arena-rank, whole process: {theirs[0]:.2f} s wall, {theirs[1]:.2f} s CPU")
    print(f"arena ratings compute:     {ours[0]:.2f} s wall, {ours[1]:.2f} s CPU")
    print(f"(an empty Python process:  {empty[0]:.2f} s wall, {empty[1]:.2f} s CPU)")
    print(
        f"ours is {theirs[0] / ours[0]:.1f}x faster in wall time,"
        f" {theirs[1] / ours[1]:.1f}x in CPU time"
    )


if __name__ == "__main__":
    main()
