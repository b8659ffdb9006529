"""Online-Elo bootstrap: the compiled rounds against the numpy loop they replaced, same run.

    python bench/elo_bootstrap.py                   # about a minute on 2 cores
    python bench/elo_bootstrap.py --battles 200000

On simulated battles (bench/ratings.py: 100 models, --battles battles, 20% ties), --rounds rounds
from one seed: first the loop as it was before the compiled kernel (numpy over the rounds, one
Python step per battle position, written out below as the baseline), then
`arena.ratings.elo.bootstrap_online_elo` (its first call, which loads or compiles the kernel, is
timed apart). Both draw the same resamples; the largest difference between their ratings is
printed with the times, wall and CPU (all threads), and the ratios.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from ratings import simulate  # bench/ratings.py

from arena.ratings import encode_battles
from arena.ratings.battles import EncodedBattles
from arena.ratings.elo import bootstrap_online_elo

T = TypeVar("T")
_SCORE_A = np.array([1.0, 0.0, 0.5, 0.5])


def numpy_loop_bootstrap(
    encoded: EncodedBattles, *, rounds: int, rng: np.random.Generator, block: int = 4096
) -> np.ndarray:
    """The bootstrap before the compiled kernel: every round advances together, one battle
    position per Python step (K=4, scale 400, base 10, start 1000)."""
    n = encoded.n_battles
    m = len(encoded.models)
    flat = np.full(rounds * m, 1000.0)
    offsets = (np.arange(rounds, dtype=np.int64) * m)[:, None]
    score = _SCORE_A[encoded.outcome]
    for start in range(0, n, block):
        width = min(block, n - start)
        picks = rng.integers(0, n, size=(rounds, width))
        ia = np.ascontiguousarray((offsets + encoded.a[picks]).T)
        ib = np.ascontiguousarray((offsets + encoded.b[picks]).T)
        sa = np.ascontiguousarray(score[picks].T)
        for t in range(width):
            ra = flat[ia[t]]
            rb = flat[ib[t]]
            ea = 1 / (1 + 10.0 ** ((rb - ra) / 400.0))
            eb = 1 / (1 + 10.0 ** ((ra - rb) / 400.0))
            flat[ia[t]] = ra + 4.0 * (sa[t] - ea)
            flat[ib[t]] = rb + 4.0 * (1 - sa[t] - eb)
    return flat.reshape(rounds, m)


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--battles", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    battles, _ = simulate(args.models, args.battles, 0)
    encoded = encode_battles(battles)
    _, first, _ = timed(
        lambda: bootstrap_online_elo(encoded, rounds=2, rng=np.random.default_rng(0))
    )
    old, old_wall, old_cpu = timed(
        lambda: numpy_loop_bootstrap(
            encoded, rounds=args.rounds, rng=np.random.default_rng(args.seed)
        )
    )
    new, new_wall, new_cpu = timed(
        lambda: bootstrap_online_elo(
            encoded, rounds=args.rounds, rng=np.random.default_rng(args.seed)
        )
    )
    print(f"{args.rounds} rounds on {args.battles:,} battles, {args.models} models")
    print(f"numpy loop (baseline): {old_wall:.2f} s wall, {old_cpu:.2f} s CPU")
    print(
        f"compiled:              {new_wall:.2f} s wall, {new_cpu:.2f} s CPU"
        f" (the first call, loading or compiling the kernel: {first:.2f} s)"
    )
    print(
        f"compiled is {old_wall / new_wall:.1f}x faster in wall time, {old_cpu / new_cpu:.1f}x"
        f" in CPU; largest rating difference {np.abs(old - new).max():.1e} points"
    )


if __name__ == "__main__":
    main()
