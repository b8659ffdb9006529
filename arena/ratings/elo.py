"""Online Elo exactly as FastChat's `compute_elo` runs it, and its bootstrap over resamples."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Final

import numpy as np
import pandas as pd

from arena.ratings.battles import (
    EncodedBattles,
    FloatArray,
    IntArray,
    battle_order,
    encode_battles,
)

ELO_K: Final = 4.0
SCALE: Final = 400.0
BASE: Final = 10.0
INIT_RATING: Final = 1000.0

# S_a per WINNERS code: model_a, model_b, tie, tie (bothbad).
_SCORE_A: Final = np.array([1.0, 0.0, 0.5, 0.5])
# Resampled battle positions are drawn this many at a time, so memory stays bounded by
# rounds x block whatever the number of battles.
_STEP_BLOCK: Final = 4096

Progress = Callable[[int, int], None]


def online_elo_codes(
    a: IntArray,
    b: IntArray,
    score_a: FloatArray,
    n_models: int,
    *,
    k: float = ELO_K,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
) -> FloatArray:
    """Online Elo over coded battles in the order given: one update per battle, returns ratings.

    Compiled (numba), with the same operations in the same order as FastChat's Python loop and
    the same C library's pow, so the ratings are bit-for-bit those of that loop
    (tests/ratings/test_elo.py checks it against a plain Python loop).
    """
    ratings = np.full(n_models, float(init))
    if a.shape[0]:
        _in_order_kernel()(
            ratings,
            np.ascontiguousarray(a, dtype=np.int64),
            np.ascontiguousarray(b, dtype=np.int64),
            np.ascontiguousarray(score_a, dtype=np.float64),
            float(k),
            float(scale),
            float(base),
        )
    return ratings


@cache
def _in_order_kernel() -> Callable[..., None]:
    import numba

    @numba.njit(nogil=True, cache=True)
    def run_in_order(
        rating: FloatArray,
        a: IntArray,
        b: IntArray,
        score_a: FloatArray,
        k: float,
        scale: float,
        base: float,
    ) -> None:
        for t in range(a.shape[0]):
            ia = a[t]
            ib = b[t]
            sa = score_a[t]
            ra = rating[ia]
            rb = rating[ib]
            # E_b is computed on its own, not as 1 - E_a, to stay bit-for-bit with FastChat.
            ea = 1 / (1 + base ** ((rb - ra) / scale))
            eb = 1 / (1 + base ** ((ra - rb) / scale))
            rating[ia] = ra + k * (sa - ea)
            rating[ib] = rb + k * (1 - sa - eb)

    kernel: Callable[..., None] = run_in_order
    return kernel


def online_elo_encoded(
    encoded: EncodedBattles,
    order: IntArray,
    *,
    k: float = ELO_K,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
) -> FloatArray:
    """Online Elo over coded battles taken in `order` (row positions), ratings in model order."""
    return online_elo_codes(
        encoded.a[order],
        encoded.b[order],
        _SCORE_A[encoded.outcome[order]],
        len(encoded.models),
        k=k,
        scale=scale,
        base=base,
        init=init,
    )


def online_elo(
    battles: pd.DataFrame,
    *,
    k: float = ELO_K,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
    encoded: EncodedBattles | None = None,
) -> pd.Series:
    """Online Elo in time order (DESIGN section 7), a Series of ratings indexed by model name.

    For each battle ordered by tstamp (table order when there is none):
    E_a = 1 / (1 + base ** ((R_b - R_a) / scale)), S_a = 1, 0 or 0.5 for either tie kind,
    R_a += k (S_a - E_a), R_b += k ((1 - S_a) - E_b); every model starts at `init`.
    """
    enc = encoded if encoded is not None else encode_battles(battles)
    ratings = online_elo_encoded(enc, battle_order(battles), k=k, scale=scale, base=base, init=init)
    return pd.Series(ratings, index=pd.Index(enc.models, name="model"), name="rating")


@cache
def _resample_kernel() -> Callable[..., None]:
    """The compiled per-round loop of bootstrap_online_elo (numba, compiled on first use and
    cached on disk, so neither `import arena.ratings` nor a run without a bootstrap pays for it).

    For rounds r0..r1-1 of one block of draws: gather each drawn battle's codes, then run online
    Elo over them in draw order. 10 ** x is computed as exp(x ln 10), once per battle, and
    E_b = q / (1 + q) instead of a second power: about a third of the time of two calls to pow,
    at a cost of a few units in the last place per battle (1e-9 points over a million battles,
    against the exact formula; tests/ratings/test_elo.py checks it).
    """
    import numba

    @numba.njit(nogil=True, cache=True)
    def run_rounds(
        flat: FloatArray,
        picks: IntArray,
        packed: IntArray,
        scores: FloatArray,
        r0: int,
        r1: int,
        m: int,
        k: float,
        log_base_over_scale: float,
        bits: int,
    ) -> None:
        width = picks.shape[1]
        ia = np.empty(width, np.int64)
        ib = np.empty(width, np.int64)
        sa = np.empty(width, np.float64)
        low = (1 << bits) - 1
        for r in range(r0, r1):
            offset = r * m
            # Gathering first lets the independent loads overlap; the update chain is serial.
            # One packed code per battle (a, b, outcome): one random load per draw, not three.
            for t in range(width):
                code = packed[picks[r, t]]
                sa[t] = scores[code & 3]
                ib[t] = offset + ((code >> 2) & low)
                ia[t] = offset + (code >> (2 + bits))
            for t in range(width):
                ra = flat[ia[t]]
                rb = flat[ib[t]]
                q = math.exp((rb - ra) * log_base_over_scale)
                ea = 1.0 / (1.0 + q)
                eb = q / (1.0 + q)
                flat[ia[t]] = ra + k * (sa[t] - ea)
                flat[ib[t]] = rb + k * (1.0 - sa[t] - eb)

    kernel: Callable[..., None] = run_rounds
    return kernel


def bootstrap_online_elo(
    encoded: EncodedBattles,
    *,
    rounds: int,
    rng: np.random.Generator,
    k: float = ELO_K,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
    progress: Progress | None = None,
    threads: int | None = None,
) -> FloatArray:
    """Online Elo on `rounds` resamples of the battles, an array of ratings (rounds x models).

    As FastChat's `get_bootstrap_result(battles, compute_elo)`: each round draws as many battles as
    there are, with replacement, in the random order of the draw (`DataFrame.sample(frac=1,
    replace=True)`), and runs online Elo over them; time order is not kept. The draws are made
    _STEP_BLOCK positions at a time for all rounds, (rounds, block) per call of `rng.integers`, so
    a seed gives the same resamples whatever runs them; the rounds are independent, so each block
    is split among `threads` threads (default: the usable cores, at most 4).
    """
    n = encoded.n_battles
    m = len(encoded.models)
    flat = np.full(rounds * m, float(init))
    packed, bits = _packed_battles(encoded)
    kernel = _resample_kernel()
    workers = max(1, min(threads or _usable_cores(), 4, rounds))
    bounds = np.linspace(0, rounds, workers + 1).astype(np.int64).tolist()
    log_base_over_scale = math.log(base) / scale
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, n, _STEP_BLOCK):
            width = min(_STEP_BLOCK, n - start)
            picks = rng.integers(0, n, size=(rounds, width))
            done = [
                pool.submit(
                    kernel, flat, picks, packed, _SCORE_A, r0, r1, m, k, log_base_over_scale, bits
                )
                for r0, r1 in itertools.pairwise(bounds)
            ]
            for future in done:
                future.result()
            if progress is not None:
                progress(start + width, n)
    return flat.reshape(rounds, m)


def _packed_battles(encoded: EncodedBattles) -> tuple[IntArray, int]:
    """Each battle as one integer, (a << (2 + bits)) | (b << 2) | outcome, with `bits` the width
    of a model code: the bootstrap reads one array at random, which stays in cache four times
    longer than three (a 1,000,000-battle table in 4 MB)."""
    bits = max(1, (len(encoded.models) - 1).bit_length())
    dtype = np.int32 if 2 + 2 * bits <= 31 else np.int64
    packed = (
        (encoded.a.astype(np.int64) << (2 + bits))
        | (encoded.b.astype(np.int64) << 2)
        | encoded.outcome.astype(np.int64)
    )
    return packed.astype(dtype), bits


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1
