"""Confidence intervals: arena-rank's sandwich, bootstrap on multinomial counts, rank bounds."""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy.special import expit, ndtri

from arena.ratings.battles import EncodedBattles, FloatArray, IntArray, PairCounts
from arena.ratings.bradley_terry import (
    BradleyTerryFit,
    pair_weights,
    ratings_exist,
    refine_strengths,
    strength_hessian_inverse,
)
from arena.ratings.elo import BASE, ELO_K, INIT_RATING, SCALE, bootstrap_online_elo
from arena.ratings.errors import RatingsUndefined
from arena.ratings.resampling import multinomial_rows

log = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP_ROUNDS: Final = 100
CONFIDENCE: Final = 0.95
# arena-rank's `hessian_reg`: added to the Hessian's diagonal, times the number of battles when the
# pairs are unweighted (its `reg_factor`), as is when they are reweighted.
HESSIAN_RIDGE: Final = 1e-5
# Rounds resampled and refitted together; bounds memory to a few (rounds x models x models) arrays.
_BOOTSTRAP_BLOCK: Final = 50
# A resample in which some model never wins or never loses has no finite fit and is drawn again;
# past this many draws per wanted round the data are too thin for a bootstrap.
_MAX_DRAWS_PER_ROUND: Final = 10

Progress = Callable[[int, int], None]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class RatingIntervals:
    """Lower and upper bounds per model on the rating scale, and how they were made.

    For a bootstrap, `samples` holds the rating of every model in every round (rounds x models),
    `median` the per-model medians and `redrawn` how many resamples had no finite fit and were
    drawn again (see bootstrap_bradley_terry).
    """

    lower: FloatArray
    upper: FloatArray
    method: Literal["sandwich", "bootstrap"]
    confidence: float
    median: FloatArray | None = None
    samples: FloatArray | None = None
    redrawn: int = 0

    def shifted(self, offset: float) -> RatingIntervals:
        """The same intervals moved by `offset` rating points (used for an anchor)."""
        return RatingIntervals(
            lower=self.lower + offset,
            upper=self.upper + offset,
            method=self.method,
            confidence=self.confidence,
            median=None if self.median is None else self.median + offset,
            samples=None if self.samples is None else self.samples + offset,
            redrawn=self.redrawn,
        )


def _laplacian(lo: IntArray, hi: IntArray, values: FloatArray, n_models: int) -> FloatArray:
    # sum_k values_k (e_lo - e_hi)(e_lo - e_hi)^T, arena-rank's assemble_parwise_matrix on pairs.
    matrix = np.zeros((n_models, n_models))
    np.add.at(matrix, (lo, hi), -values)
    np.add.at(matrix, (hi, lo), -values)
    np.add.at(matrix, (lo, lo), values)
    np.add.at(matrix, (hi, hi), values)
    return matrix


def sandwich_covariance(
    counts: PairCounts,
    strengths: FloatArray,
    *,
    reweighted: bool = False,
    ridge: float = HESSIAN_RIDGE,
) -> FloatArray:
    """Covariance of the strengths (natural-log units) by arena-rank's sandwich estimator.

    With p the fitted win probability of each pair's lo model and c the pair weight:
    H = sum c n p (1 - p) x x^T + lambda I,
    G = sum c^2 [w_lo (1 - p)^2 + t (1/2 - p)^2 + w_hi p^2] x x^T
    (the squared score of every battle; arena-rank's (w_k (y_k - p_k))^2 / n_k summed over its
    cells), covariance H^-1 G H^-1, with lambda = ridge * battles unweighted, ridge reweighted.
    """
    weights = pair_weights(counts, reweighted=reweighted)
    p = expit(strengths[counts.lo] - strengths[counts.hi])
    curvature = weights * counts.totals * p * (1.0 - p)
    score_sq = weights**2 * (
        counts.wins_lo * (1.0 - p) ** 2 + counts.ties * (0.5 - p) ** 2 + counts.wins_hi * p**2
    )
    m = counts.n_models
    reg = ridge * (1.0 if reweighted else float(counts.n_battles))
    laplacian = _laplacian(counts.lo, counts.hi, curvature, m)
    gradient_cov = _laplacian(counts.lo, counts.hi, score_sq, m)
    # (H + lambda I)^-1 and (H + lambda I + c 11^T)^-1 differ only along the all-ones vector, which
    # G annihilates, so the covariance is the same in exact arithmetic; the second keeps rounding
    # errors in G from being multiplied by 1 / lambda^2 along that vector.
    gauge = max(float(np.trace(laplacian)), 1e-300) / (m * m)
    hessian_inv = np.linalg.inv(laplacian + reg * np.eye(m) + gauge)
    return np.asarray(hessian_inv @ gradient_cov @ hessian_inv, dtype=np.float64)


def z_value(confidence: float) -> float:
    """The two-sided normal quantile: 1.959964 for 95%."""
    return float(ndtri(1.0 - (1.0 - confidence) / 2.0))


def sandwich_intervals(
    counts: PairCounts,
    fit: BradleyTerryFit,
    *,
    confidence: float = CONFIDENCE,
    ridge: float = HESSIAN_RIDGE,
) -> RatingIntervals:
    """Ratings +- z * scale / ln(base) * sqrt(diag(H^-1 G H^-1)), as arena-rank's default."""
    covariance = sandwich_covariance(counts, fit.strengths, reweighted=fit.reweighted, ridge=ridge)
    half_width = z_value(confidence) * fit.points_per_unit * np.sqrt(np.diag(covariance))
    ratings = fit.ratings
    return RatingIntervals(
        lower=ratings - half_width,
        upper=ratings + half_width,
        method="sandwich",
        confidence=confidence,
    )


# Above this many models the batched reachability below would hold rounds x models^2 floats.
_BATCHED_GRAPH_MODELS: Final = 300


def _fits_exist(counts: PairCounts, resampled: FloatArray) -> BoolArray:
    """Per resample (rows of lo wins | ties | hi wins), whether its maximum likelihood is finite.

    A resample that kept every 'has beaten' edge of the full data is strongly connected like it;
    the others are checked by reachability from the first model along 'has beaten' edges and
    against them, all resamples at once.
    """
    p, m = counts.n_pairs, counts.n_models
    wins_lo, ties, wins_hi = resampled[:, :p], resampled[:, p : 2 * p], resampled[:, 2 * p :]
    beat_lo = wins_lo + ties > 0
    beat_hi = wins_hi + ties > 0
    need_lo = counts.wins_lo + counts.ties > 0
    need_hi = counts.wins_hi + counts.ties > 0
    ok = np.asarray((beat_lo | ~need_lo).all(axis=1) & (beat_hi | ~need_hi).all(axis=1))
    doubtful = np.flatnonzero(~ok)
    if not doubtful.size:
        return ok
    if m > _BATCHED_GRAPH_MODELS:
        for r in doubtful:
            ok[r] = ratings_exist(counts, wins_lo[r], ties[r], wins_hi[r])
        return ok
    beaten = np.zeros((doubtful.size, m, m), dtype=np.float32)
    beaten[:, counts.lo, counts.hi] = beat_lo[doubtful]
    beaten[:, counts.hi, counts.lo] = beat_hi[doubtful]
    connected = np.ones(doubtful.size, dtype=bool)
    for edges in (beaten, beaten.transpose(0, 2, 1)):
        reached = np.zeros((doubtful.size, 1, m), dtype=np.float32)
        reached[:, 0, 0] = 1.0
        for _ in range(m):
            grown = np.minimum(reached + reached @ edges, 1.0)
            if np.array_equal(grown, reached):
                break
            reached = grown
        connected &= reached[:, 0, :].all(axis=1)
    ok[doubtful] = connected
    return ok


def bootstrap_bradley_terry(
    counts: PairCounts,
    fit: BradleyTerryFit,
    *,
    rounds: int = DEFAULT_BOOTSTRAP_ROUNDS,
    rng: np.random.Generator,
    progress: Progress | None = None,
) -> tuple[FloatArray, int]:
    """Bradley-Terry ratings refitted on `rounds` bootstrap resamples: (rounds x models), redrawn.

    Resampling the battles with replacement is the same, in law, as drawing the per-pair
    (lo wins, ties, hi wins) counts from a multinomial with n = battles and p = their shares, which
    is what each round does, without copying any table. Pair weights, when reweighted, stay those
    of the full data (as arena-rank's bootstrap). Each refit starts from the full-data fit and takes
    exact Newton steps, so it lands on the resample's maximum likelihood to rounding precision.
    A resample in which some group of models never wins or never loses has no finite fit; such a
    draw is made again and counted in `redrawn` (conditioning on existence, as a fixed-iteration
    solver silently does with its arbitrary finite answer).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1; got {rounds}.")
    n = counts.n_battles
    p = counts.n_pairs
    cells = np.concatenate([counts.wins_lo, counts.ties, counts.wins_hi])
    present = np.flatnonzero(cells)
    shares = cells[present] / n
    weights = pair_weights(counts, reweighted=fit.reweighted)
    inverse = strength_hessian_inverse(counts.lo, counts.hi, fit.strengths, weights * counts.totals)

    def draw(block_rng: np.random.Generator, size: int) -> FloatArray:
        resampled = np.zeros((size, 3 * p))
        resampled[:, present] = multinomial_rows(block_rng, n, shares, size)
        return resampled

    def fit_block(resampled: FloatArray) -> FloatArray:
        wins_lo, ties, wins_hi = resampled[:, :p], resampled[:, p : 2 * p], resampled[:, 2 * p :]
        keep = np.flatnonzero(_fits_exist(counts, resampled))
        wins = weights * (wins_lo[keep] + 0.5 * ties[keep])
        totals = weights * (wins_lo[keep] + ties[keep] + wins_hi[keep])
        return refine_strengths(
            counts.lo, counts.hi, wins, totals, np.tile(fit.strengths, (keep.size, 1)), inverse
        )

    # Each block of rounds has its own generator spawned from `rng`, so the draws depend on the
    # seed only, not on threads. Worker threads draw and fit whole blocks (numpy releases the
    # GIL in both); this thread collects them in order and redraws the rare resamples without
    # a finite fit.
    sizes = [min(_BOOTSTRAP_BLOCK, rounds - start) for start in range(0, rounds, _BOOTSTRAP_BLOCK)]
    block_rngs = rng.spawn(len(sizes))

    def drawn_and_fitted(block: int) -> FloatArray:
        return fit_block(draw(block_rngs[block], sizes[block]))

    workers = max(1, min(len(sizes), os.cpu_count() or 1))
    samples: list[FloatArray] = []
    redrawn = draws = finished = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[int, Future[FloatArray]]] = deque()
        submitted = 0
        while finished < rounds:
            while submitted < len(sizes) and len(pending) < 2 * workers:
                future = pool.submit(drawn_and_fitted, submitted)
                pending.append((submitted, future))
                submitted += 1
            block, future = pending.popleft()
            strengths = future.result()
            draws += sizes[block]
            kept = [strengths]
            missing = sizes[block] - strengths.shape[0]
            block_draws = sizes[block]
            while missing:
                # Rare: resamples without a finite fit are drawn again from the block's generator.
                if block_draws >= _MAX_DRAWS_PER_ROUND * sizes[block]:
                    raise RatingsUndefined(
                        f"the bootstrap gave up: {redrawn + missing} of {draws} resamples left"
                        " some model without a win or without a loss, so their ratings would be"
                        " infinite. There are too few battles for bootstrap intervals; use the"
                        " sandwich intervals instead.",
                        models=counts.models,
                    )
                redrawn += missing
                draws += missing
                block_draws += missing
                extra = fit_block(draw(block_rngs[block], missing))
                kept.append(extra)
                missing -= extra.shape[0]
            samples.extend(kept)
            finished += sizes[block]
            if progress is not None:
                progress(finished, rounds)
    if redrawn:
        log.warning(
            "bootstrap: %d of %d resamples had no finite fit and were drawn again",
            redrawn,
            draws,
        )
    return fit.init + fit.points_per_unit * np.vstack(samples), redrawn


def bootstrap_elo(
    encoded: EncodedBattles,
    *,
    rounds: int = DEFAULT_BOOTSTRAP_ROUNDS,
    rng: np.random.Generator,
    k: float = ELO_K,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
    progress: Progress | None = None,
) -> FloatArray:
    """Online Elo on `rounds` resamples of the battles (FastChat's convention), rounds x models."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1; got {rounds}.")
    return bootstrap_online_elo(
        encoded, rounds=rounds, rng=rng, k=k, scale=scale, base=base, init=init, progress=progress
    )


def bootstrap_intervals(
    samples: FloatArray, *, confidence: float = CONFIDENCE, redrawn: int = 0
) -> RatingIntervals:
    """Per-model quantiles of bootstrap ratings: (1-c)/2, median, (1+c)/2, linear interpolation."""
    tail = (1.0 - confidence) / 2.0
    lower, median, upper = np.quantile(samples, [tail, 0.5, 1.0 - tail], axis=0)
    return RatingIntervals(
        lower=lower,
        upper=upper,
        method="bootstrap",
        confidence=confidence,
        median=median,
        samples=samples,
        redrawn=redrawn,
    )


def rank_upper_bound(lower: FloatArray, upper: FloatArray) -> IntArray:
    """1 + the number of models whose lower bound is above this model's upper bound."""
    ordered = np.sort(lower)
    above = lower.shape[0] - np.searchsorted(ordered, upper, side="right")
    return np.asarray(1 + above, dtype=np.int64)
