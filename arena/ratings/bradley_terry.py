"""Bradley-Terry maximum likelihood on pair counts: existence checks and a batched Newton solver."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.special import expit

from arena.ratings.battles import FloatArray, IntArray, PairCounts, aggregate_battles
from arena.ratings.elo import BASE, INIT_RATING, SCALE
from arena.ratings.errors import RatingsError, RatingsUndefined

# arena-rank's `min_pair_count`: a pair's weight is 1 / max(its battles, this) when reweighted.
REWEIGHT_MIN_PAIR_COUNT: Final = 50
# Newton stops after a full step that moved no strength by more than this (natural-log units):
# the error left after a full step of size s is O(s^2), here about 1e-14, far below rounding of
# the ratings (1e-7 is about 2e-5 rating points; the step itself is applied).
NEWTON_TOL: Final = 1e-7
# A step that changes no pair's logit by more than this is inside the region where Newton steps on
# the logistic likelihood always go uphill (its third derivative is bounded by its second), so the
# likelihood is only evaluated, and the step halved if needed, for larger steps.
_TRUSTED_LOGIT_STEP: Final = 0.5
NEWTON_MAX_ITER: Final = 100
_MAX_HALVINGS: Final = 40
# Chord iterations (a fixed Hessian) stop a fit once its step is below this, having checked that
# every step shrank at least fourfold, which bounds the error left by a third of the last step.
_CHORD_TOL: Final = 1e-9
_CHORD_RATIO: Final = 0.25
_CHORD_MAX_ITER: Final = 30
_NAMES_SHOWN: Final = 8


def pair_weights(counts: PairCounts, *, reweighted: bool) -> FloatArray:
    """Per-pair likelihood weights: 1, or 1 / max(pair battles, 50) as arena-rank's `reweighted`."""
    if not reweighted:
        return np.ones(counts.n_pairs)
    return 1.0 / np.maximum(counts.totals.astype(np.float64), REWEIGHT_MIN_PAIR_COUNT)


def _names(models: tuple[str, ...], members: IntArray) -> str:
    names = [repr(models[int(i)]) for i in members[:_NAMES_SHOWN]]
    more = len(members) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _graph(counts: PairCounts, lo_beat_hi: IntArray, hi_beat_lo: IntArray) -> sp.csr_matrix:
    # Edge u -> v when u has beaten v at least once (a tie is half a win each way).
    m = counts.n_models
    src = np.concatenate([counts.lo[lo_beat_hi > 0], counts.hi[hi_beat_lo > 0]])
    dst = np.concatenate([counts.hi[lo_beat_hi > 0], counts.lo[hi_beat_lo > 0]])
    return sp.csr_matrix((np.ones(src.shape[0]), (src, dst)), shape=(m, m))


def ratings_exist(counts: PairCounts, wins_lo: IntArray, ties: IntArray, wins_hi: IntArray) -> bool:
    """Whether the maximum-likelihood strengths are finite: 'has beaten' is strongly connected."""
    graph = _graph(counts, wins_lo + ties, wins_hi + ties)
    n_components, _ = connected_components(graph, directed=True, connection="strong")
    return bool(n_components == 1)


def check_ratings_exist(counts: PairCounts) -> None:
    """Raise RatingsUndefined naming the models whose ratings would be infinite or incomparable.

    Bradley-Terry strengths are finite exactly when every group of models has beaten some model
    outside it and lost to some model outside it (Zermelo's condition; a tie is half a win each
    way).
    """
    models = counts.models
    if counts.n_models < 2:
        raise RatingsUndefined(
            f"ratings need battles between at least two models; got {counts.n_models}.",
            models=models,
        )
    met = _graph(counts, counts.totals, counts.totals)
    n_groups, group = connected_components(met, directed=False)
    if n_groups > 1:
        parts = [_names(models, np.flatnonzero(group == g)) for g in range(n_groups)]
        raise RatingsUndefined(
            f"the battles fall into {n_groups} groups of models that never met each other: "
            + "; ".join(f"[{p}]" for p in parts[:_NAMES_SHOWN])
            + ". Ratings from different groups cannot be compared: add battles between the groups,"
            " or rate each group on its own.",
            models=models,
        )
    beaten = _graph(counts, counts.wins_lo + counts.ties, counts.wins_hi + counts.ties)
    n_parts, part = connected_components(beaten, directed=True, connection="strong")
    if n_parts == 1:
        return
    src, dst = beaten.nonzero()
    crossing = part[src] != part[dst]
    beats_outsider = np.zeros(n_parts, dtype=bool)
    loses_to_outsider = np.zeros(n_parts, dtype=bool)
    beats_outsider[part[src[crossing]]] = True
    loses_to_outsider[part[dst[crossing]]] = True
    problems: list[str] = []
    named: list[str] = []
    for g in range(n_parts):
        members = np.flatnonzero(part == g)
        if not loses_to_outsider[g]:
            alone, together = "never lost (rating +infinity)", "never lost to"
        elif not beats_outsider[g]:
            alone, together = "never won (rating -infinity)", "never beat"
        else:
            continue
        if len(members) == 1:
            problems.append(f"{_names(models, members)} {alone}")
        else:
            problems.append(f"[{_names(models, members)}] {together} a model outside that group")
        named.extend(models[int(i)] for i in members)
    raise RatingsUndefined(
        "Bradley-Terry ratings do not exist for these battles: "
        + "; ".join(problems)
        + ". A tie counts as half a win for each side. Add battles for these models or leave them"
        " out.",
        models=tuple(named),
    )


def _log_likelihood(d: FloatArray, wins: FloatArray, totals: FloatArray) -> FloatArray:
    return np.asarray((wins * d - totals * np.logaddexp(0.0, d)).sum(axis=1), dtype=np.float64)


def newton_strengths(
    lo: IntArray,
    hi: IntArray,
    wins: FloatArray,
    totals: FloatArray,
    start: FloatArray,
    *,
    tol: float = NEWTON_TOL,
    max_iter: int = NEWTON_MAX_ITER,
) -> tuple[FloatArray, int]:
    """Maximise sum_k wins_k log s(d_k) + (totals_k - wins_k) log s(-d_k) for many fits at once.

    `wins` and `totals` are (fits x pairs), d_k = theta[lo_k] - theta[hi_k]. Each iteration takes
    the exact Newton step with the dense Hessian (models x models, the graph Laplacian of
    totals * p(1-p)), gauge fixed by adding a multiple of the all-ones matrix: the step then solves
    H step = gradient with sum(step) = 0, so strengths keep the mean of `start`. A step that would
    lower the likelihood is halved. Returns the strengths and the iterations used; every row must
    satisfy ratings_exist. Converged when a full step moved no strength by more than `tol`.
    """
    theta = np.array(start, dtype=np.float64, copy=True)
    n_fits, m = theta.shape
    gradient_of = PairSums(lo, hi, m)
    off_lo_hi = lo * m + hi
    off_hi_lo = hi * m + lo
    diagonal = np.arange(m) * (m + 1)
    active = np.arange(n_fits)
    iterations = 0
    while active.size and iterations < max_iter:
        iterations += 1
        th = theta[active]
        w = wins[active]
        n = totals[active]
        d = th[:, lo] - th[:, hi]
        p = expit(d)
        gradient = gradient_of(w - n * p)
        curvature = 1.0 - p
        curvature *= p
        curvature *= n
        hessian = np.zeros((active.size, m * m))
        hessian[:, off_lo_hi] = -curvature
        hessian[:, off_hi_lo] = -curvature
        hessian[:, diagonal] = -(
            hessian.reshape(active.size, m, m).sum(axis=2) - hessian[:, diagonal]
        )
        hessian = hessian.reshape(active.size, m, m)
        trace = np.trace(hessian, axis1=1, axis2=2)
        # Any positive multiple of ones*ones^T fixes the gauge; this one keeps the condition number
        # close to the Laplacian's own.
        hessian += (np.maximum(trace, 1e-300) / (m * m))[:, None, None]
        try:
            step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError as exc:
            raise RatingsError(
                "the Bradley-Terry Hessian is singular; check the battles with check_ratings_exist."
            ) from exc
        scale = np.ones(active.size)
        logit_step = step[:, lo] - step[:, hi]
        checked = np.flatnonzero(np.abs(logit_step).max(axis=1) > _TRUSTED_LOGIT_STEP)
        if checked.size:
            d_c, w_c, n_c = d[checked], w[checked], n[checked]
            before = _log_likelihood(d_c, w_c, n_c)
            for _ in range(_MAX_HALVINGS):
                d_new = d_c + scale[checked, None] * logit_step[checked]
                after = _log_likelihood(d_new, w_c, n_c)
                worse = after < before - 1e-13 * np.maximum(1.0, np.abs(before))
                if not worse.any():
                    break
                scale[checked[worse]] *= 0.5
        moved = scale[:, None] * step
        theta[active] = th + moved
        done = (scale == 1.0) & (np.abs(moved).max(axis=1) < tol)
        active = active[~done]
    if active.size:
        raise RatingsError(
            f"the Bradley-Terry fit did not converge in {max_iter} Newton iterations"
            f" for {active.size} of {n_fits} fits."
        )
    return theta, iterations


class PairSums:
    """Per-model sums of per-pair values: value at each pair's lo model minus value at its hi model.

    The gradient of the likelihood for many fits at once, by segmented sums over the pairs sorted
    by model (np.add.reduceat), without a matrix product: no BLAS threads to compete with the
    sampling threads, and memory linear in the number of pairs.
    """

    def __init__(self, lo: IntArray, hi: IntArray, n_models: int) -> None:
        self.n_models = n_models
        self.by_lo = np.argsort(lo, kind="stable")
        self.lo_sorted = bool(np.all(self.by_lo == np.arange(lo.shape[0])))
        self.lo_starts, self.lo_models = self._segments(lo[self.by_lo])
        self.by_hi = np.argsort(hi, kind="stable")
        self.hi_starts, self.hi_models = self._segments(hi[self.by_hi])

    @staticmethod
    def _segments(models: IntArray) -> tuple[IntArray, IntArray]:
        starts = np.flatnonzero(np.diff(models, prepend=-1))
        return starts, models[starts]

    def __call__(self, values: FloatArray) -> FloatArray:
        out = np.zeros((values.shape[0], self.n_models))
        by_lo = values if self.lo_sorted else values[:, self.by_lo]
        out[:, self.lo_models] += np.add.reduceat(by_lo, self.lo_starts, axis=1)
        out[:, self.hi_models] -= np.add.reduceat(values[:, self.by_hi], self.hi_starts, axis=1)
        return out


def strength_hessian_inverse(
    lo: IntArray, hi: IntArray, strengths: FloatArray, totals: FloatArray
) -> FloatArray:
    """Inverse of the negated log-likelihood Hessian at `strengths`, gauge fixed (models²)."""
    m = strengths.shape[0]
    p = expit(strengths[lo] - strengths[hi])
    curvature = totals * p * (1.0 - p)
    hessian = np.zeros((m, m))
    hessian[lo, hi] = -curvature
    hessian[hi, lo] = -curvature
    hessian[np.diag_indices(m)] = -hessian.sum(axis=1)
    hessian += max(float(np.trace(hessian)), 1e-300) / (m * m)
    return np.asarray(np.linalg.inv(hessian), dtype=np.float64)


def refine_strengths(
    lo: IntArray,
    hi: IntArray,
    wins: FloatArray,
    totals: FloatArray,
    start: FloatArray,
    hessian_inverse: FloatArray,
) -> FloatArray:
    """Maximum-likelihood strengths of many fits near one solution, such as bootstrap resamples.

    Chord iterations: the Newton step with one shared inverse Hessian (of the full data at
    `start`), which costs a pass over the pairs and a matrix-vector product per iteration instead
    of a Hessian and a solve per fit. They converge linearly at a rate set by how far a fit's
    data are from the full data; a fit whose steps do not shrink fourfold each time, or whose
    first step is large, is finished by newton_strengths instead. Results are the same maximum
    to rounding level either way.
    """
    n_fits, m = start.shape
    theta = np.empty((n_fits, m))
    slow = np.zeros(n_fits, dtype=np.bool_)
    _chord_kernel()(
        np.ascontiguousarray(lo, dtype=np.int64),
        np.ascontiguousarray(hi, dtype=np.int64),
        np.ascontiguousarray(wins, dtype=np.float64),
        np.ascontiguousarray(totals, dtype=np.float64),
        np.ascontiguousarray(start, dtype=np.float64),
        np.ascontiguousarray(hessian_inverse, dtype=np.float64),
        theta,
        slow,
        _CHORD_TOL,
        _CHORD_RATIO,
        _CHORD_MAX_ITER,
        _TRUSTED_LOGIT_STEP,
    )
    if slow.any():
        theta[slow], _ = newton_strengths(lo, hi, wins[slow], totals[slow], theta[slow])
    return theta


@cache
def _chord_kernel() -> Callable[..., None]:
    """refine_strengths' chord iterations, compiled (numba, on first use, cached on disk).

    One fit at a time, one pass over the pairs per iteration: the batched numpy form spent most
    of its time gathering strengths per pair and summing the residuals back per model, over
    arrays a hundred fits wide, and took about twice as long for a hundred models. It releases
    the GIL, so the bootstrap's threads refit their blocks side by side.
    """
    import numba

    @numba.njit(nogil=True, cache=True)
    def chord(
        lo: IntArray,
        hi: IntArray,
        wins: FloatArray,
        totals: FloatArray,
        start: FloatArray,
        hessian_inverse: FloatArray,
        theta: FloatArray,
        slow: npt.NDArray[np.bool_],
        tol: float,
        ratio: float,
        max_iter: int,
        trusted_logit_step: float,
    ) -> None:
        n_fits, n_pairs = wins.shape
        m = start.shape[1]
        gradient = np.empty(m)
        step = np.empty(m)
        for f in range(n_fits):
            th = theta[f]
            th[:] = start[f]
            previous = np.inf
            # Slow until it converges: a wild step or the last iteration leaves it to Newton.
            slow[f] = True
            for iteration in range(max_iter):
                gradient[:] = 0.0
                for k in range(n_pairs):
                    a = lo[k]
                    b = hi[k]
                    residual = wins[f, k] - totals[f, k] / (1.0 + math.exp(th[b] - th[a]))
                    gradient[a] += residual
                    gradient[b] -= residual
                # step = gradient @ hessian_inverse, row by row, without temporaries.
                step[:] = 0.0
                for i in range(m):
                    g = gradient[i]
                    for j in range(m):
                        step[j] += g * hessian_inverse[i, j]
                size = 0.0
                for j in range(m):
                    size = max(size, abs(step[j]))
                if iteration == 0:
                    wild = False
                    for k in range(n_pairs):
                        if abs(step[lo[k]] - step[hi[k]]) > trusted_logit_step:
                            wild = True
                            break
                else:
                    wild = size > ratio * previous
                if wild:
                    break
                th += step
                previous = size
                if size < tol:
                    slow[f] = False
                    break

    kernel: Callable[..., None] = chord
    return kernel


@dataclass(frozen=True)
class BradleyTerryFit:
    """A fitted Bradley-Terry model.

    `strengths` are natural-log strengths with mean zero: P(i beats j) = 1 / (1 + exp(s_j - s_i)).
    Ratings are init + scale / ln(base) * strengths, i.e. 400 * beta + 1000 for beta in base-10
    units, so their mean is `init` (the gauge FastChat's and arena-rank's solvers land on).
    """

    models: tuple[str, ...]
    strengths: FloatArray
    scale: float
    base: float
    init: float
    reweighted: bool
    iterations: int

    @property
    def points_per_unit(self) -> float:
        """Rating points per natural-log unit of strength: scale / ln(base)."""
        return self.scale / math.log(self.base)

    @property
    def ratings(self) -> FloatArray:
        return self.init + self.points_per_unit * self.strengths

    def as_series(self) -> pd.Series:
        return pd.Series(self.ratings, index=pd.Index(self.models, name="model"), name="rating")


def pair_wins_totals(counts: PairCounts, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Weighted wins of each pair's lo model (a tie is half a win) and weighted battles."""
    wins = weights * (counts.wins_lo + 0.5 * counts.ties)
    totals = weights * counts.totals
    return wins, totals


def fit_bradley_terry(
    counts: PairCounts,
    *,
    reweighted: bool = False,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
) -> BradleyTerryFit:
    """Maximum-likelihood Bradley-Terry ratings on pair counts, unregularised (DESIGN section 7).

    Maximises sum w_ij log sigmoid(ln(base) * (beta_i - beta_j)) with ties as half a win to each
    side, optionally with arena-rank's 1 / max(pair count, 50) pair weights, to rounding precision.
    Raises RatingsUndefined when the maximum does not exist (a model never won or never lost, or the
    comparison graph is split).
    """
    check_ratings_exist(counts)
    wins, totals = pair_wins_totals(counts, pair_weights(counts, reweighted=reweighted))
    strengths, iterations = newton_strengths(
        counts.lo,
        counts.hi,
        wins[None, :],
        totals[None, :],
        np.zeros((1, counts.n_models)),
    )
    return BradleyTerryFit(
        models=counts.models,
        strengths=strengths[0],
        scale=float(scale),
        base=float(base),
        init=float(init),
        reweighted=reweighted,
        iterations=iterations,
    )


def bradley_terry_ratings(
    battles: pd.DataFrame,
    *,
    reweighted: bool = False,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
) -> pd.Series:
    """Bradley-Terry ratings of a battles table, a Series indexed by model name (mean = init)."""
    fit = fit_bradley_terry(
        aggregate_battles(battles), reweighted=reweighted, scale=scale, base=base, init=init
    )
    return fit.as_series()
