"""Multinomial draws for the bootstrap, exact in law and about twice as fast as numpy's own.

numpy's `Generator.multinomial` draws one binomial per cell, each with its own set-up, in
sequence: with the 15,000 cells of a hundred models' pair table that is most of the cost of
the Bradley-Terry bootstrap. Independent Poisson counts are cheaper per cell, and they give a
multinomial exactly: Poisson counts with means mean * p that sum to s are, given s, a
multinomial(s, p) draw. Drawn with a mean a few standard deviations below n, a row sums to at
most n (a row that sums to more is drawn again), and the n - s draws still missing are added
as single categorical draws: a multinomial(s, p) plus an independent multinomial(n - s, p) is a
multinomial(n, p).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from arena.ratings.battles import FloatArray, IntArray

# The Poisson mean sits this many standard deviations below n: a row overshoots (and is drawn
# again) with probability about 0.1 %, and about 3 * sqrt(n) draws per row are left to add.
_SIGMAS_BELOW: Final = 3.0


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
    k = shares.size
    mean = max(n - sigmas_below * np.sqrt(n), 0.0)
    counts: IntArray = rng.poisson(mean * shares, size=(size, k)).astype(np.int64, copy=False)
    totals = counts.sum(axis=1)
    over = np.flatnonzero(totals > n)
    while over.size:
        counts[over] = rng.poisson(mean * shares, size=(over.size, k))
        totals[over] = counts[over].sum(axis=1)
        over = over[totals[over] > n]
    missing = n - totals
    cumulative = np.cumsum(shares)
    drawn = np.searchsorted(
        cumulative, rng.random(int(missing.sum())) * cumulative[-1], side="right"
    )
    cells = np.minimum(drawn, k - 1)  # a uniform rounded up to the total lands in the last cell
    rows = np.repeat(np.arange(size, dtype=np.int64), missing)
    counts += np.bincount(rows * k + cells, minlength=size * k).reshape(size, k)
    return counts
