"""Multinomial draws for the bootstrap, exact in law and several times as fast as numpy's own.

numpy's `Generator.multinomial` draws one binomial per cell, each with its own set-up, in
sequence: with the 15,000 cells of a hundred models' pair table that is most of the cost of
the Bradley-Terry bootstrap. Independent Poisson counts are cheaper per cell, and they give a
multinomial exactly: Poisson counts with means mean * p that sum to s are, given s, a
multinomial(s, p) draw. Drawn with a mean a few standard deviations below n, a row sums to at
most n (a row that sums to more is drawn again), and the n - s draws still missing are added
as single categorical draws: a multinomial(s, p) plus an independent multinomial(n - s, p) is a
multinomial(n, p).

The Poisson counts themselves come from poisson_rows: every round draws each cell with the
same mean, so a cell's probabilities are tabulated once and each round inverts a uniform draw
against them (numpy's sampler pays a logarithm, a log-gamma and a rejection test per draw).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from arena.ratings.battles import FloatArray, IntArray

# The Poisson mean sits this many standard deviations below n: a row overshoots (and is drawn
# again) with probability about 0.1 %, and about 3 * sqrt(n) draws per row are left to add.
_SIGMAS_BELOW: Final = 3.0
# poisson_rows tabulates a cell's probabilities out to where they fall below this fraction of
# the most likely count's: the mass left out is below 1e-16, under the resolution of a uniform
# draw, so the inversion gives the exact law to within float64 rounding.
_TAIL: Final = 1e-17


def poisson_rows(rng: np.random.Generator, means: FloatArray, size: int) -> IntArray:
    """`size` rows of independent Poisson counts with `means`, one column per mean (a view of
    size x len(means)); `means` are finite and 0 or more."""
    means = np.ascontiguousarray(means, dtype=np.float64)
    if not np.isfinite(means).all() or (means < 0).any():
        raise ValueError("Poisson means must be finite and 0 or more.")
    uniforms = rng.random((means.size, size))
    counts = np.empty((means.size, size), dtype=np.int64)
    from arena.ratings import guide_tables  # numba, only where a bootstrap draws

    guide_tables.invert_poisson(means, uniforms, counts, _TAIL)
    return counts.T


def multinomial_rows(
    rng: np.random.Generator,
    n: int,
    shares: FloatArray,
    size: int,
    *,
    sigmas_below: float = _SIGMAS_BELOW,
) -> IntArray:
    """`size` independent multinomial(n, shares) draws, one per row (size x len(shares)).

    `shares` are positive and sum to 1 (up to rounding, as numpy's multinomial accepts).
    `sigmas_below` places the Poisson mean (any value gives the same law; it trades rows drawn
    again against draws added one by one).
    """
    if n < 0:
        raise ValueError(f"n must be 0 or more; got {n}.")
    mean = max(n - sigmas_below * np.sqrt(n), 0.0)
    # Cell-major (cells x rows), as poisson_rows draws them: each cell's rounds side by side.
    by_cell = poisson_rows(rng, mean * shares, size).T
    totals = by_cell.sum(axis=0)
    over = np.flatnonzero(totals > n)
    while over.size:
        by_cell[:, over] = poisson_rows(rng, mean * shares, over.size).T
        totals[over] = by_cell[:, over].sum(axis=0)
        over = over[totals[over] > n]
    missing = n - totals
    cumulative = np.cumsum(shares)
    uniforms = rng.random(int(missing.sum()))
    from arena.ratings import guide_tables

    guide_tables.add_draws(np.ascontiguousarray(cumulative), uniforms, missing, by_cell)
    return by_cell.T
