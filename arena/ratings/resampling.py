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

import math
from collections.abc import Callable
from functools import cache
from typing import Final, NamedTuple

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
    _kernels().invert(means, uniforms, counts, _TAIL)
    return counts.T


class _Kernels(NamedTuple):
    """The compiled loops: poisson_rows' inversion, multinomial_rows' draws added one by one."""

    invert: Callable[..., None]
    add_draws: Callable[..., None]


@cache
def _kernels() -> _Kernels:
    """The compiled loops (numba, on first use, cached on disk; they release the GIL).

    Both invert uniform draws against a table of cumulative probabilities with a guide table:
    for each of g equal slices of [0, total), the first entry whose cumulative probability
    passes the slice's start, so a search starts a step or two from its answer.

    invert, per cell: the probabilities from the most likely count outwards by the recurrence
    p(x + 1) = p(x) * mean / (x + 1), cumulated, then every round's uniform looked up (one
    guide slice per round). add_draws: row r takes the next missing[r] uniforms, each landing
    in the first cell whose cumulative share exceeds it (numpy's searchsorted, side "right"; a
    uniform rounded up to the total lands in the last cell), where a binary search took about
    as long as all the Poisson counts.
    """
    import numba

    @numba.njit(nogil=True, cache=True)
    def fill_guide(cumulative: FloatArray, kept: int, guide: IntArray) -> None:
        total = cumulative[kept - 1]
        at = 0
        for h in range(guide.size):
            threshold = h / guide.size * total
            while at < kept - 1 and cumulative[at] <= threshold:
                at += 1
            guide[h] = at

    @numba.njit(nogil=True, cache=True)
    def look_up(cumulative: FloatArray, kept: int, guide: IntArray, u: float) -> int:
        target = u * cumulative[kept - 1]
        at = int(guide[min(int(u * guide.size), guide.size - 1)])
        # The guide's threshold and the target are rounded apart: step back if it passed.
        while at > 0 and cumulative[at - 1] > target:
            at -= 1
        while at < kept - 1 and cumulative[at] <= target:
            at += 1
        return at

    @numba.njit(nogil=True, cache=True)
    def invert(means: FloatArray, uniforms: FloatArray, counts: IntArray, tail: float) -> None:
        n_cells, rounds = uniforms.shape
        cumulative = np.empty(256)
        guide = np.empty(rounds, np.int64)
        for j in range(n_cells):
            mean = means[j]
            if mean == 0.0:
                counts[j, :] = 0
                continue
            mode = int(mean)
            top = math.exp(mode * math.log(mean) - mean - math.lgamma(mode + 1.0))
            smallest = top * tail
            low = mode
            p = top
            while low > 0 and p * low / mean >= smallest:
                p = p * low / mean
                low -= 1
            # p is now the probability of `low`; cumulate upwards until the far tail.
            total = p
            cumulative[0] = total
            kept = 1
            x = low
            while True:
                p = p * mean / (x + 1)
                x += 1
                if x > mode and p < smallest:
                    break
                if kept == cumulative.size:
                    grown = np.empty(2 * kept)
                    grown[:kept] = cumulative
                    cumulative = grown
                total += p
                cumulative[kept] = total
                kept += 1
            fill_guide(cumulative, kept, guide)
            for r in range(rounds):
                counts[j, r] = low + look_up(cumulative, kept, guide, uniforms[j, r])

    @numba.njit(nogil=True, cache=True)
    def add_draws(
        cumulative: FloatArray, uniforms: FloatArray, missing: IntArray, by_cell: IntArray
    ) -> None:
        n_cells = cumulative.size
        if n_cells == 0:
            return
        guide = np.empty(n_cells, np.int64)
        fill_guide(cumulative, n_cells, guide)
        drawn = 0
        for row in range(missing.size):
            for _ in range(missing[row]):
                by_cell[look_up(cumulative, n_cells, guide, uniforms[drawn]), row] += 1
                drawn += 1

    return _Kernels(invert=invert, add_draws=add_draws)


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
    _kernels().add_draws(np.ascontiguousarray(cumulative), uniforms, missing, by_cell)
    return by_cell.T
