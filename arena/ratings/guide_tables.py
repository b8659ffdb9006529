"""The compiled loops of the bootstrap's draws (numba; compiled on first use, cached on disk;
they release the GIL). Imported only when a bootstrap draws, so that numba stays out of the
processes that never resample.

Both invert uniform draws against a table of cumulative probabilities with a guide table: for
each of g equal slices of [0, total), the first entry whose cumulative probability passes the
slice's start, so a search starts a step or two from its answer.

invert_poisson, per cell: the probabilities from the most likely count outwards by the
recurrence p(x + 1) = p(x) * mean / (x + 1), cumulated, then every round's uniform looked up
(one guide slice per round). add_draws: row r takes the next missing[r] uniforms, each landing
in the first cell whose cumulative share exceeds it (numpy's searchsorted, side "right"; a
uniform rounded up to the total lands in the last cell), where a binary search took about as
long as all the Poisson counts.

The loops are module functions, not closures: numba keys a closure's disk cache on its
captured values, and a captured compiled function pickles differently in every process, so
each process would compile again (seconds) and add another entry to the cache.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from arena.ratings.battles import FloatArray, IntArray


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
def invert_poisson(means: FloatArray, uniforms: FloatArray, counts: IntArray, tail: float) -> None:
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
