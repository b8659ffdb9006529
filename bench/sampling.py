"""Active pair sampling (issue 20): votes to a precise leaderboard, uniform vs weighted vs active.

    python bench/sampling.py                     # about two minutes on 2 cores
    python bench/sampling.py --seeds 3 --models 30 --floor 0.2

A simulated arena of --models models with known ratings (normal, sd 100 points, as
bench/rigging.py) and voters who follow them: a vote is a tie with Davidson's (1970) extension of
Bradley-Terry, P(tie) = nu sqrt(pi_a pi_b) / (pi_a + pi_b + nu sqrt(pi_a pi_b)) with nu = 1 (a
third of the votes between equals are ties, fewer between unequal models: about 30 % overall, as
in the public arena data), and otherwise model a wins with the Bradley-Terry probability
pi_a / (pi_a + pi_b). Every model is active from the first vote, all weights 1.

Votes come in batches of --batch (the default ARENA_RECOMPUTE_EVERY_VOTES); after each batch
the ratings are fitted and the sandwich intervals computed as the recompute job does, and the next
batch is drawn from the plan made from them:
- uniform: every pair alike;
- weighted: today's sampler, the product of the weights with the new-model boost (x4 below 300
  counted votes);
- active: the same weights and boost, blended with the expected reduction of the leaderboard's
  uncertainty (arena/ratings/active_sampling.py), with --floor of the draws spread evenly.
The three modes run on the same true ratings and the same random seeds. Counted per mode, the
votes until (a) every model's 95 % interval is at most +-15 rating points, and (b) the fitted order
is right, from then on to the end of the run (--max-votes), for every pair whose true gap exceeds
20 points (the first time it is right is mostly luck); the means over the seeds (a run that never
gets there counts as --max-votes), their ratio to uniform, and in active mode the smallest planned
pair share as a fraction of the uniform pair share (the floor must hold).

For (a) it also prints a bound: the best any fixed allocation of the votes over the pairs could
do with the true strengths known, kept above the same floor. The sandwich intervals measure each
vote by its squared score, in which a tie counts as half a win: a tie between close models says
little, so with ties as common as in the arena a vote between distant models is nearly as
informative as one between neighbours, and no allocation needs far fewer votes than uniform.

For (b) it prints the same kind of bound on the largest Var(gap) / gap^2 (how sure each pair's
order is), twice: over every pair with gaps below 20 points counted as 20 (a sampler has to learn
which pairs are close, which takes intervals about as narrow as ordering them), and over the pairs
whose true gap exceeds 20 points only (a sampler told which pairs matter). An adaptive rule
cannot beat the best fixed allocation by more than noise: the bounds say how many votes any rule
could save here.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from arena.ratings.active_sampling import (
    RANK_WEIGHT,
    all_pairs,
    blend_shares,
    centred_covariance,
    pair_gains,
    pair_laplacian,
    weighted_pair_shares,
)
from arena.ratings.battles import FloatArray, PairCounts
from arena.ratings.bradley_terry import fit_bradley_terry
from arena.ratings.elo import BASE, SCALE
from arena.ratings.errors import RatingsError
from arena.ratings.intervals import sandwich_intervals

POINTS = SCALE / math.log(BASE)  # rating points per natural-log unit of strength
MODES = ("uniform", "weighted", "active")
HALF_WIDTH = 15.0
RESOLVED_GAP = 20.0
TIE_NU = 1.0
VOTE_TARGET, BOOST = 300, 4.0


@dataclass
class Run:
    votes_to_width: int | None = None
    votes_to_order: int | None = None
    min_pair_share: float = math.inf  # smallest planned pair share / uniform pair share


def outcome_probabilities(ratings: FloatArray, lo: np.ndarray, hi: np.ndarray) -> FloatArray:
    """(lo wins, tie, hi wins) per pair under Davidson's model with nu = TIE_NU."""
    s_lo, s_hi = ratings[lo] / POINTS, ratings[hi] / POINTS
    mid = (s_lo + s_hi) / 2
    a, b, t = np.exp(s_lo - mid), np.exp(s_hi - mid), TIE_NU * np.ones_like(mid)
    z = a + b + t
    return np.stack([a / z, t / z, b / z], axis=1)


def information_per_vote(ratings: FloatArray, lo: np.ndarray, hi: np.ndarray) -> FloatArray:
    """What one vote on each pair adds to the information, in the sandwich's own measure: e_k =
    h_k^2 / g_k with h = s (1 - s) and g the expected squared score, s the expected score."""
    outcome = outcome_probabilities(ratings, lo, hi)
    score = outcome[:, 0] + outcome[:, 1] / 2
    squared = outcome[:, 0] * (1 - score) ** 2 + outcome[:, 1] * (0.5 - score) ** 2
    squared += outcome[:, 2] * score**2
    return np.asarray((score * (1 - score)) ** 2 / squared, dtype=np.float64)


def best_allocation_ratio(
    ratings: FloatArray,
    floor: float,
    target: Callable[[FloatArray], tuple[FloatArray, FloatArray]],
    iterations: int,
) -> float:
    """The largest of a set of variances under the best fixed allocation of the votes over the
    pairs, over the same under uniform draws (votes to a target scale as that ratio). `target`
    maps a covariance to (the scaled variances, the weight matrix W_r = dr/dC for each of them
    raised to the power below, summed). The allocation minimises sum_r r^8 (close to the
    largest) by the multiplicative algorithm (Silvey, Titterington and Torsney 1978), then keeps
    the floor."""
    m = ratings.shape[0]
    lo, hi = all_pairs(m)
    per_vote = information_per_vote(ratings, lo, hi)
    power = 8.0

    def covariance(shares: FloatArray) -> FloatArray:
        return centred_covariance(pair_laplacian(lo, hi, shares * per_vote, m))

    uniform = np.full(lo.shape[0], 1.0 / lo.shape[0])
    shares = uniform.copy()
    for _ in range(iterations):
        cov = covariance(shares)
        spread = cov @ target(cov)[1] @ cov
        gain = per_vote * (spread[lo, lo] + spread[hi, hi] - 2 * spread[lo, hi])
        shares = shares * (gain / (shares @ gain)) ** (1 / (power + 1))
        shares /= shares.sum()
    best = target(covariance((1 - floor) * shares + floor * uniform))[0].max()
    return float(best / target(covariance(uniform))[0].max())


def best_width_ratio(ratings: FloatArray, floor: float, iterations: int = 1500) -> float:
    """Bound for (a): the widest interval (every model's variance, weighted by variance^7)."""

    def widths(cov: FloatArray) -> tuple[FloatArray, FloatArray]:
        variance = np.diag(cov)
        return variance, np.diag((variance / variance.max()) ** 7)

    return best_allocation_ratio(ratings, floor, widths, iterations)


def best_order_ratio(
    ratings: FloatArray, floor: float, *, oracle: bool, iterations: int = 600
) -> float:
    """Bound for (b): the order of a pair is as sure as its gap is large against its standard
    deviation, so the target is the largest Var(gap) / gap^2. With `oracle`, only over the pairs
    whose true gap exceeds RESOLVED_GAP (a sampler told which pairs matter); without, over every
    pair with gap^2 floored at RESOLVED_GAP^2 (a sampler must also learn that the close pairs are
    close, which takes intervals about as narrow)."""
    m = ratings.shape[0]
    lo, hi = all_pairs(m)
    gap = np.abs(ratings[lo] - ratings[hi])
    counted = gap > RESOLVED_GAP if oracle else np.ones(gap.shape[0], dtype=bool)
    scale = np.maximum(gap, RESOLVED_GAP) ** 2

    def gaps(cov: FloatArray) -> tuple[FloatArray, FloatArray]:
        variance = np.diag(cov)
        ratio = (variance[lo] + variance[hi] - 2 * cov[lo, hi]) / scale
        ratio = np.where(counted, ratio, 0.0)
        weight = (ratio / ratio.max()) ** 7 / scale
        return ratio, pair_laplacian(lo, hi, np.where(counted, weight, 0.0), m)

    return best_allocation_ratio(ratings, floor, gaps, iterations)


def weighted_shares(votes_per_model: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> FloatArray:
    """Today's sampler with every weight 1 and the default boost (x4 below 300 counted votes)."""
    return weighted_pair_shares(np.where(votes_per_model < VOTE_TARGET, BOOST, 1.0), lo, hi)


def simulate(mode: str, ratings: FloatArray, args: argparse.Namespace, seed: int) -> Run:
    rng = np.random.default_rng(seed)
    m = ratings.shape[0]
    lo, hi = all_pairs(m)
    n_pairs = lo.shape[0]
    probabilities = outcome_probabilities(ratings, lo, hi)
    cells = np.zeros((n_pairs, 3), dtype=np.int64)
    true_gap = ratings[lo] - ratings[hi]
    resolved = np.abs(true_gap) > RESOLVED_GAP
    uniform = np.full(n_pairs, 1.0 / n_pairs)
    shares = uniform
    run = Run()
    models = tuple(f"m{i:02d}" for i in range(m))
    rated = np.ones(n_pairs, dtype=bool)
    total = 0
    order_right = False
    while total < args.max_votes:
        drawn = rng.multinomial(args.batch, shares)
        cells += rng.multinomial(drawn, probabilities)
        total += args.batch
        met = cells.sum(axis=1) > 0
        counts = PairCounts(
            models=models,
            lo=lo[met],
            hi=hi[met],
            wins_lo=cells[met, 0],
            ties=cells[met, 1],
            wins_hi=cells[met, 2],
        )
        votes = counts.votes()
        try:
            fit = fit_bradley_terry(counts)
        except RatingsError:
            fit = None
        if fit is not None:
            bounds = sandwich_intervals(counts, fit)
            if run.votes_to_width is None and (
                (bounds.upper - bounds.lower).max() / 2 <= HALF_WIDTH
            ):
                run.votes_to_width = total
            fitted_gap = fit.strengths[lo] - fit.strengths[hi]
            right = bool(np.all(np.sign(fitted_gap[resolved]) == np.sign(true_gap[resolved])))
            if right and not order_right:
                run.votes_to_order = total
            order_right = right
        else:
            order_right = False
        if mode == "uniform":
            continue
        shares = weighted_shares(votes, lo, hi)
        if mode == "active" and fit is not None:
            gains = pair_gains(counts, fit.strengths, rank_weight=args.rank_weight)
            shares = blend_shares(shares, gains.gain, rated, floor=args.floor)
            run.min_pair_share = min(run.min_pair_share, float(shares.min()) * n_pairs)
    if not order_right:
        run.votes_to_order = None
    return run


def mean_of(values: list[int | None], cap: int) -> tuple[float, int]:
    """The mean votes, a run that never got there counted at the cap; how many did not."""
    return float(np.mean([cap if v is None else v for v in values])), sum(v is None for v in values)


def main(argv: list[str] | None = None, out: Callable[[str], object] = sys.stdout.write) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--floor", type=float, default=0.2)
    parser.add_argument("--max-votes", type=int, default=75_000)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--rank-weight", type=float, default=RANK_WEIGHT)
    args = parser.parse_args(argv)
    runs: dict[str, list[Run]] = {mode: [] for mode in MODES}
    bounds: list[float] = []
    order_bounds: list[tuple[float, float]] = []
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        ratings = np.random.default_rng(seed).normal(0.0, 100.0, args.models)
        bounds.append(best_width_ratio(ratings, args.floor))
        order_bounds.append(
            (
                best_order_ratio(ratings, args.floor, oracle=False),
                best_order_ratio(ratings, args.floor, oracle=True),
            )
        )
        for mode in MODES:
            run = simulate(mode, ratings, args, seed * 1000 + 7)
            runs[mode].append(run)
            out(
                f"seed {seed:3d} {mode:9s} width<=15: {run.votes_to_width}  "
                f"order: {run.votes_to_order}\n"
            )
    out(
        f"\n{args.models} models, {args.seeds} seeds, batches of {args.batch} votes, floor "
        f"{args.floor:g}, rank weight {args.rank_weight:g}, runs of {args.max_votes} votes; "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    out(
        f"{'mode':9s} {'votes to +-15':>14s} {'vs uniform':>10s} {'votes to order':>15s} "
        f"{'vs uniform':>10s}\n"
    )
    base_w, _ = mean_of([r.votes_to_width for r in runs["uniform"]], args.max_votes)
    base_o, _ = mean_of([r.votes_to_order for r in runs["uniform"]], args.max_votes)
    for mode in MODES:
        w, w_miss = mean_of([r.votes_to_width for r in runs[mode]], args.max_votes)
        o, o_miss = mean_of([r.votes_to_order for r in runs[mode]], args.max_votes)
        out(
            f"{mode:9s} {w:14.0f} {w / base_w:10.2f} {o:15.0f} {o / base_o:10.2f}"
            + (f"  ({w_miss} + {o_miss} runs hit the cap)" if w_miss or o_miss else "")
            + "\n"
        )
    out(
        f"best fixed allocation, true strengths known (bound for +-15): "
        f"{np.mean(bounds):.2f} of uniform's votes (per seed "
        + " ".join(f"{b:.2f}" for b in bounds)
        + ")\n"
    )
    learned, told = (np.array(pair) for pair in zip(*order_bounds, strict=True))
    out(
        f"best fixed allocation, true strengths known (bound for the order, gap / sd): "
        f"{np.mean(learned):.2f} of uniform's votes (per seed "
        + " ".join(f"{b:.2f}" for b in learned)
        + f"); {np.mean(told):.2f} if also told which gaps exceed {RESOLVED_GAP:g} points\n"
    )
    smallest = min(r.min_pair_share for r in runs["active"])
    out(
        f"active: smallest planned pair share {smallest:.3f} of the uniform share "
        f"(floor {args.floor:g}): {'held' if smallest >= args.floor - 1e-9 else 'BROKEN'}\n"
    )


if __name__ == "__main__":
    main()
