"""Active pair sampling: how much one more vote on each pair would shrink the leaderboard's
uncertainty, and the planned share of every pair that follows (DESIGN section 6).

Chiang et al. (2024, section 5) draw a pair in proportion to the fall of its win rate's standard
error that one more vote brings. Here the fall is that of the ratings' own uncertainty, computed
from the fit, as a weighted A-optimal design (Pukelsheim, Optimal Design of Experiments, ch. 6):

- F = sum_k n_k e_k x_k x_k^T is the Fisher information of the Bradley-Terry strengths on the
  aggregated counts (the H of the sandwich in intervals.py): x_k = e_lo - e_hi, e_k = p_k (1 - p_k)
  with p_k the fitted win probability of pair k. C = F^+ (mean-zero gauge) is its covariance.
- The uncertainty is U = tr(W C) with W = W_width + rank_weight W_rank, each part scaled so that
  its gains sum to 1:
  W_width = diag(C_ii^(width_power - 1)): for width_power 2, U is half the sum of the squared
  variances, so its gains go first to the widest intervals (the table is as precise as its least
  precise row);
  W_rank = sum_{i<j} phi(d_ij / sd_ij) / sd_ij^2 x_ij x_ij^T, d_ij the fitted gap and sd_ij its
  standard deviation: the variance of each gap, weighted by how unsure the table still is of the
  pair's order. Off by default (RANK_WEIGHT): bench/sampling.py found it costs votes to narrow
  intervals without bringing a right order sooner.
- One more vote on pair k adds e_k x_k x_k^T to F; by Sherman-Morrison U falls by
  gain_k = e_k x_k^T C W C x_k / (1 + e_k x_k^T C x_k), for every pair at once in O(models^3).
- Planned shares (blend_shares): a `floor` fraction of the draws is spread evenly over every
  drawable pair, so none is starved; the rest follows each pair's weighted share (the operator's
  weights with the new-model boost) times gain^sharpness. Sharpness above 1 leans towards the
  largest gains, as a sequential optimal design would (Wynn 1970), while the plan stays spread
  over the batch of draws made before the next recompute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from arena.ratings.battles import FloatArray, IntArray, PairCounts

DEFAULT_FLOOR: Final = 0.2
WIDTH_POWER: Final = 2.0
# bench/sampling.py measured no gain in the votes to a right order from the ranking part, and a
# loss in the votes to narrow intervals (issue 20): off unless asked for.
RANK_WEIGHT: Final = 0.0
SHARPNESS: Final = 4.0

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PairGains:
    """Every pair of rated models (lo < hi index `models`), its counted votes and the share of the
    leaderboard's uncertainty one more vote on it is expected to remove (the gains sum to
    1 + rank_weight when both parts have any)."""

    models: tuple[str, ...]
    lo: IntArray
    hi: IntArray
    votes: IntArray
    gain: FloatArray


def all_pairs(n_models: int) -> tuple[IntArray, IntArray]:
    """(lo, hi) of every unordered pair, lo < hi, in row-major order of the upper triangle."""
    lo, hi = np.triu_indices(n_models, k=1)
    return lo.astype(np.int64), hi.astype(np.int64)


def pair_laplacian(lo: IntArray, hi: IntArray, values: FloatArray, n_models: int) -> FloatArray:
    # sum_k values_k x_k x_k^T, each pair listed once.
    matrix = np.zeros((n_models, n_models))
    matrix[lo, hi] = -values
    matrix[hi, lo] = -values
    matrix[np.diag_indices(n_models)] = -matrix.sum(axis=1)
    return matrix


def centred_covariance(information: FloatArray) -> FloatArray:
    """The pseudo-inverse of a connected graph Laplacian L: (L + aJ)^-1 - J / (a m^2), J = 11^T."""
    m = information.shape[0]
    a = max(float(np.trace(information)), 1e-300) / (m * m)
    inverse = np.linalg.inv(information + a)
    return np.asarray(inverse - 1.0 / (a * m * m), dtype=np.float64)


def pair_gains(
    counts: PairCounts,
    strengths: FloatArray,
    *,
    width_power: float = WIDTH_POWER,
    rank_weight: float = RANK_WEIGHT,
) -> PairGains:
    """The gain of one more vote on every pair of `counts.models`, met or not.

    `strengths` are the fitted natural-log strengths (BradleyTerryFit.strengths); the counts must
    connect every model, as they do whenever the fit exists.
    """
    m = counts.n_models
    if strengths.shape != (m,):
        raise ValueError(f"{strengths.shape[0]} strengths for {m} models")
    lo, hi = all_pairs(m)
    votes = np.zeros((m, m), dtype=np.int64)
    votes[counts.lo, counts.hi] = counts.totals
    pair_votes = votes[lo, hi]
    if m < 2:
        return PairGains(counts.models, lo, hi, pair_votes, np.zeros(0))
    gap = strengths[lo] - strengths[hi]
    p = expit(gap)
    per_vote = p * (1.0 - p)
    covariance = centred_covariance(pair_laplacian(lo, hi, pair_votes * per_vote, m))
    variance = np.maximum(np.diag(covariance), 0.0)
    floor = 1e-12 * max(float(variance.max()), 1e-300)
    gap_variance = np.maximum(variance[lo] + variance[hi] - 2.0 * covariance[lo, hi], floor)
    shrink = 1.0 + per_vote * gap_variance

    def gains_for(weight: FloatArray) -> FloatArray:
        spread = covariance @ weight @ covariance
        fall = per_vote * np.maximum(spread[lo, lo] + spread[hi, hi] - 2.0 * spread[lo, hi], 0.0)
        gains = fall / shrink
        total = float(gains.sum())
        return gains / total if total > 0 and np.isfinite(total) else np.zeros_like(gains)

    gain = gains_for(np.diag(np.maximum(variance, floor) ** (width_power - 1.0)))
    if rank_weight > 0:
        unsure = _normal_density(gap / np.sqrt(gap_variance)) / gap_variance
        gain = gain + rank_weight * gains_for(pair_laplacian(lo, hi, unsure, m))
    return PairGains(counts.models, lo, hi, pair_votes, gain)


def weighted_pair_shares(weights: FloatArray, lo: IntArray, hi: IntArray) -> FloatArray:
    """Today's sampler: pair {i, j} in proportion to w_i w_j (all zero when no pair is drawable)."""
    pair = weights[lo] * weights[hi]
    total = float(pair.sum())
    return pair / total if total > 0 else np.zeros_like(pair)


def blend_shares(
    weighted: FloatArray,
    gain: FloatArray,
    rated: BoolArray,
    *,
    floor: float = DEFAULT_FLOOR,
    sharpness: float = SHARPNESS,
) -> FloatArray:
    """Planned pair shares in active mode (they sum to 1 when any pair is drawable).

    `weighted` are the pair shares of the weighted sampler, `gain` the pairs' gains, `rated` whether
    both models of the pair have a rating (the gain of the others is ignored). A pair with a zero
    weighted share is never drawn; every other pair gets at least `floor` / (drawable pairs). Of the
    rest, unrated pairs keep their weighted share (a model without a rating gets votes as in
    weighted mode, boost included) and the rated pairs share their weighted mass in proportion to
    weighted share x gain^sharpness (x their weighted share, when no gain is positive).
    """
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be between 0 and 1; got {floor}")
    if sharpness <= 0:
        raise ValueError(f"sharpness must be positive; got {sharpness}")
    shares = np.array(weighted, dtype=np.float64, copy=True)
    drawable = shares > 0
    n_drawable = int(drawable.sum())
    if n_drawable == 0:
        return shares
    usable = rated & drawable & (gain > 0) & np.isfinite(gain)
    if usable.any():
        relative = np.zeros_like(shares)
        relative[usable] = (gain[usable] / float(gain[usable].max())) ** sharpness
        pull = shares * relative
        mass = float(shares[rated].sum())
        shares[rated] = mass * pull[rated] / float(pull.sum())
    return (1.0 - floor) * shares / float(shares.sum()) + floor * drawable / n_drawable


def model_shares(shares: FloatArray, lo: IntArray, hi: IntArray, n_models: int) -> FloatArray:
    """Each model's share of the seats (two per battle): half the sum of its pairs' shares."""
    return (np.bincount(lo, shares, n_models) + np.bincount(hi, shares, n_models)) / 2.0


def _normal_density(z: FloatArray) -> FloatArray:
    # The standard normal density, as scipy.stats.norm.pdf (whose import takes most of a second)
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
