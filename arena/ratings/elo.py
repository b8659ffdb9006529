"""Online Elo exactly as FastChat's `compute_elo` runs it, and its bootstrap over resamples."""

from __future__ import annotations

from collections.abc import Callable
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
    """Online Elo over coded battles in the order given: one update per battle, returns ratings."""
    rating = [float(init)] * n_models
    for ia, ib, sa in zip(a.tolist(), b.tolist(), score_a.tolist(), strict=True):
        ra = rating[ia]
        rb = rating[ib]
        # E_b is computed on its own, not as 1 - E_a, to stay bit-for-bit with FastChat.
        ea = 1 / (1 + base ** ((rb - ra) / scale))
        eb = 1 / (1 + base ** ((ra - rb) / scale))
        rating[ia] = ra + k * (sa - ea)
        rating[ib] = rb + k * (1 - sa - eb)
    return np.array(rating, dtype=np.float64)


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
) -> FloatArray:
    """Online Elo on `rounds` resamples of the battles, an array of ratings (rounds x models).

    As FastChat's `get_bootstrap_result(battles, compute_elo)`: each round draws as many battles as
    there are, with replacement, in the random order of the draw (`DataFrame.sample(frac=1,
    replace=True)`), and runs online Elo over them; time order is not kept. The rounds advance
    together, one battle position at a time, so the per-battle loop runs once for all rounds.
    """
    n = encoded.n_battles
    m = len(encoded.models)
    flat = np.full(rounds * m, float(init))
    offsets = (np.arange(rounds, dtype=np.int64) * m)[:, None]
    score = _SCORE_A[encoded.outcome]
    for start in range(0, n, _STEP_BLOCK):
        width = min(_STEP_BLOCK, n - start)
        picks = rng.integers(0, n, size=(rounds, width))
        # Position-major layout makes each step's slice contiguous.
        ia = np.ascontiguousarray((offsets + encoded.a[picks]).T)
        ib = np.ascontiguousarray((offsets + encoded.b[picks]).T)
        sa = np.ascontiguousarray(score[picks].T)
        for t in range(width):
            ra = flat[ia[t]]
            rb = flat[ib[t]]
            ea = 1 / (1 + base ** ((rb - ra) / scale))
            eb = 1 / (1 + base ** ((ra - rb) / scale))
            flat[ia[t]] = ra + k * (sa[t] - ea)
            flat[ib[t]] = rb + k * (1 - sa[t] - eb)
        if progress is not None:
            progress(start + width, n)
    return flat.reshape(rounds, m)
