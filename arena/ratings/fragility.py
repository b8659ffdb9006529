"""How many votes hold each rank: the fewest whose removal swaps two models (AMIP, refitted).

Broderick, Giordano and Meager's approximate maximum influence perturbation, on the Bradley-Terry
fit of the aggregated pair counts. Removing one vote of outcome y (1 if the pair's lo model won,
1/2 a tie, 0 if it lost) from pair k changes the score of the likelihood at the fitted strengths
by ds_k(y) x_k, with x_k = e_lo - e_hi and, unweighted, ds_k(y) = p_k - y (with arena-rank's pair
weights c(n) = 1 / max(n, 50): c(n - 1) (w_k - y - (n - 1) p_k) - c(n) (w_k - n p_k)). One Newton
step moves the strengths by J^-1 ds_k(y) x_k, J the negated Hessian, so the gap s_i - s_j moves by
ds_k(y) (u[lo_k] - u[hi_k]) with u = J^-1 (e_i - e_j): one solve per pair of models compared.
Votes of one pair and outcome are exchangeable; greedily removing those that close the gap most,
each kind up to its count, until the predicted change exceeds the gap gives the first-order count.

The first-order count can be off when the removal is large (it ignores how p and J move), so it
is only the starting guess: removals along the same greedy order are refitted exactly (chord
iterations from the full fit, batched over every pair compared) and the count reported is the
smallest along that order whose refit puts j strictly above i. It is therefore a count of votes
that provably swap the two (an upper bound on the true minimum, which is combinatorial), and
removing one vote fewer along the same order does not swap them.

Only removals that leave every model rated count: each pair keeps one of its ties (or one win of
each side when it has no tie), so the "has beaten" graph, hence the existence of the fit, is the
same after any removal considered here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from scipy.special import expit

from arena.ratings.battles import FloatArray, IntArray, PairCounts
from arena.ratings.bradley_terry import (
    REWEIGHT_MIN_PAIR_COUNT,
    BradleyTerryFit,
    PairSums,
    newton_strengths,
    strength_hessian_inverse,
)

# A removal swaps two models when the refitted gap is below minus this (natural-log strength,
# about 2e-4 rating points): far above the solvers' rounding, so any exact refit agrees.
SWAP_MARGIN: Final = 1e-6
# First place is refined for the challengers whose first-order count is within this factor of
# the smallest, and for at least FIRST_PLACE_CANDIDATES of them.
FIRST_PLACE_SLACK: Final = 2.0
FIRST_PLACE_CANDIDATES: Final = 3
# The greedy order is first looked for among this many most helpful kinds of vote per pair of
# models compared (a partial sort); the full sort is done only when they do not suffice.
_TOP_KINDS: Final = 128
# Refits guided by the calibrated first order (each probes the guess and one vote fewer) before
# the search falls back to growing the count by _GROWTH per refit, then to bisection.
_GUESSES: Final = 3
# Chord refits (see _refit_gaps): at most this many steps, contracting at least this fast, the
# error bound multiplied by this safety factor; the rest finish by Newton.
_CHORD_ITERATIONS: Final = 40
_CHORD_RATIO: Final = 0.8
_BOUND_SAFETY: Final = 4.0
_GROWTH: Final = 1.25
_MAX_ROUNDS: Final = 200
METHOD: Final = "amip-refit"
# The outcomes of a pair in the order of PairCounts' three count arrays, and their score y.
_Y: Final = (1.0, 0.5, 0.0)


@dataclass(frozen=True)
class Removal:
    """`count` votes between the two `models` that `winner` won (None: ties, either kind)."""

    models: tuple[str, str]
    winner: str | None
    count: int

    def to_json_dict(self) -> dict[str, Any]:
        return {"models": list(self.models), "winner": self.winner, "count": self.count}


@dataclass(frozen=True)
class Swap:
    """The fewest votes found whose removal puts `below` above `above` (None: no removal that
    keeps every model rated does), the first-order estimate, and the votes to remove."""

    above: str
    below: str
    votes: int | None
    first_order_votes: int | None
    removals: tuple[Removal, ...]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "above": self.above,
            "below": self.below,
            "votes": self.votes,
            "first_order_votes": self.first_order_votes,
            "removals": [r.to_json_dict() for r in self.removals],
        }


@dataclass(frozen=True)
class Fragility:
    """Per adjacent pair of the table (rank k above k + 1 by rating) and for first place (the
    challenger that needs the fewest removals to overtake the leader)."""

    adjacent: tuple[Swap, ...]
    first_place: Swap | None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "method": METHOD,
            "first_place": None if self.first_place is None else self.first_place.to_json_dict(),
            "adjacent": [s.to_json_dict() for s in self.adjacent],
        }


class _Plan:
    """One pair compared (i above j): its gap, the greedy order of removable votes, the search.

    `change` is the first-order change of the gap per vote removed, for the `kinds` (indices of
    lo wins | ties | hi wins) that close it, most helpful first; the search refits removals
    along that order.
    """

    def __init__(
        self, i: int, j: int, gap: float, change: FloatArray, kinds: IntArray, caps: IntArray
    ) -> None:
        self.i, self.j, self.gap = i, j, gap
        self.kinds = kinds
        self.caps = caps[kinds]
        self.cum_votes = np.cumsum(self.caps)
        self.closed = np.cumsum(-change * self.caps)
        self.n_max = int(self.cum_votes[-1]) if kinds.size else 0
        self.first_order = self.votes_to_close(gap)
        # Refitted closure over first-order closure, measured at the last probe: the first-order
        # count scaled by it is the next guess (a secant step on the refitted gap).
        self.calibration = 1.0
        self.guesses = 0
        self.low = 0  # a count known not to swap (removing nothing leaves the gap >= 0)
        self.high: int | None = None  # a count known to swap
        self.result: int | None = None
        self.done = self.n_max == 0

    def closure(self, n: int) -> float:
        """The first-order closure of the gap by the first `n` votes of the order."""
        q = int(np.searchsorted(self.cum_votes, n, side="right"))
        before_votes = int(self.cum_votes[q - 1]) if q else 0
        before = float(self.closed[q - 1]) if q else 0.0
        if q == self.kinds.size:
            return before
        per_vote = float(self.closed[q]) - before
        per_vote /= float(self.caps[q])
        return before + per_vote * (n - before_votes)

    def votes_to_close(self, amount: float) -> int | None:
        """The fewest votes along the order whose first-order closure exceeds `amount`."""
        q = int(np.searchsorted(self.closed, amount, side="right"))
        if q == self.kinds.size:
            return None
        before_votes = int(self.cum_votes[q - 1]) if q else 0
        before = float(self.closed[q - 1]) if q else 0.0
        per_vote = (float(self.closed[q]) - before) / float(self.caps[q])
        return before_votes + int(math.floor((amount - before) / per_vote)) + 1

    def removed(self, n: int) -> tuple[IntArray, IntArray]:
        """The kinds of vote and how many of each the first `n` votes of the order remove."""
        q = int(np.searchsorted(self.cum_votes, n, side="right"))
        partial = n - (int(self.cum_votes[q - 1]) if q else 0)
        if q < self.kinds.size and partial:
            return self.kinds[: q + 1], np.append(self.caps[:q], partial)
        return self.kinds[:q], self.caps[:q]

    def next_probes(self) -> list[int]:
        ceiling = self.n_max if self.high is None else self.high
        if self.high is not None and self.high - self.low <= 1:
            self.result = self.high
            self.done = True
            return []
        if self.high is None and self.low >= self.n_max:
            self.done = True
            return []
        if self.guesses < _GUESSES:
            self.guesses += 1
            guess = self.votes_to_close(self.gap / self.calibration)
            guess = self.n_max if guess is None else guess
            probes = sorted(n for n in {guess - 1, guess} if self.low < n <= ceiling)
            if probes:
                return probes
        if self.high is None:
            return [min(self.n_max, max(self.low + 1, math.ceil(self.low * _GROWTH)))]
        return [(self.low + self.high) // 2]

    def record(self, n: int, gap: float) -> None:
        closure = self.closure(n)
        if closure > 0 and self.gap > gap:
            self.calibration = (self.gap - gap) / closure
        if gap < -SWAP_MARGIN:
            self.high = n if self.high is None else min(self.high, n)
        else:
            self.low = max(self.low, n)


def _reserved_caps(counts: PairCounts) -> IntArray:
    """Votes of each kind (lo wins | ties | hi wins) that may be removed: all but one tie of each
    pair that has ties, else all but one win of each side that has wins."""
    has_ties = counts.ties > 0
    wins_lo = counts.wins_lo - ((counts.wins_lo > 0) & ~has_ties)
    ties = counts.ties - has_ties
    wins_hi = counts.wins_hi - ((counts.wins_hi > 0) & ~has_ties)
    return np.concatenate([wins_lo, ties, wins_hi]).astype(np.int64)


def _weights(totals: FloatArray, reweighted: bool) -> FloatArray:
    if not reweighted:
        return np.ones_like(totals)
    return 1.0 / np.maximum(totals, REWEIGHT_MIN_PAIR_COUNT)


def _score_changes(counts: PairCounts, strengths: FloatArray, reweighted: bool) -> FloatArray:
    """ds_k(y) per kind of vote (lo wins | ties | hi wins): the change of pair k's score."""
    p = expit(strengths[counts.lo] - strengths[counts.hi])
    n = counts.totals.astype(np.float64)
    w = counts.wins_lo + 0.5 * counts.ties
    now = _weights(n, reweighted) * (w - n * p)
    after = _weights(np.maximum(n - 1.0, 0.0), reweighted)
    return np.concatenate([after * (w - y - (n - 1.0) * p) - now for y in _Y])


def _refit_gaps(
    counts: PairCounts,
    fit: BradleyTerryFit,
    inverse: FloatArray,
    probes: Sequence[tuple[_Plan, tuple[IntArray, IntArray]]],
) -> FloatArray:
    """The refitted gap s_i - s_j after each probe's removal, all probes in one batch, to the
    precision that decides whether it is below -SWAP_MARGIN.

    Chord iterations from the full fit with its inverse Hessian (the first one is the
    first-order prediction). They contract linearly at a rate r, so the gap is within
    2 |step| r / (1 - r) of the exact refit. From the second step on, r is estimated by the
    larger of the last two step ratios (they grow towards r as the slowest direction takes
    over), the bound is doubled for safety (_BOUND_SAFETY = 4 in all), and a probe stops once
    the bound cannot carry its gap across the threshold. Probes that contract slower
    than _CHORD_RATIO, or stay undecided, are finished by exact Newton (rare: large removals
    contract at about 0.4, and a dense solve per probe costs more than many chord steps).
    """
    n_probes = len(probes)
    rows = np.repeat(np.arange(n_probes), [kinds.size for _, (kinds, _) in probes])
    kinds = np.concatenate([kinds for _, (kinds, _) in probes])
    amounts = np.concatenate([amounts for _, (_, amounts) in probes]).astype(np.float64)
    outcome, pair = np.divmod(kinds, counts.n_pairs)
    wins = np.tile(counts.wins_lo + 0.5 * counts.ties, (n_probes, 1))
    totals = np.tile(counts.totals.astype(np.float64), (n_probes, 1))
    np.subtract.at(wins, (rows, pair), amounts * np.array(_Y)[outcome])
    np.subtract.at(totals, (rows, pair), amounts)
    if fit.reweighted:
        weights = _weights(totals, reweighted=True)
        wins *= weights
        totals *= weights
    i = np.array([plan.i for plan, _ in probes])
    j = np.array([plan.j for plan, _ in probes])
    theta = np.tile(fit.strengths, (n_probes, 1))
    gradient_of = PairSums(counts.lo, counts.hi, counts.n_models)
    decided = np.zeros(n_probes, dtype=bool)
    previous = np.full(n_probes, np.inf)
    last_ratio = np.zeros(n_probes)
    active = np.arange(n_probes)
    for iteration in range(_CHORD_ITERATIONS):
        th = theta[active]
        residual = wins[active] - totals[active] * expit(th[:, counts.lo] - th[:, counts.hi])
        step = gradient_of(residual) @ inverse
        theta[active] = th + step
        size = np.abs(step).max(axis=1)
        ratio = size / np.maximum(previous[active], 1e-300)
        rate = np.maximum(ratio, last_ratio[active])
        previous[active] = size
        last_ratio[active] = ratio
        if iteration < 1:
            continue
        gap = theta[active, i[active]] - theta[active, j[active]]
        contracting = rate <= _CHORD_RATIO
        bound = _BOUND_SAFETY * size * rate / (1.0 - np.minimum(rate, _CHORD_RATIO))
        settled = contracting & (np.abs(gap + SWAP_MARGIN) > bound)
        decided[active[settled]] = True
        active = active[contracting & ~settled]
        if not active.size:
            break
    slow = np.flatnonzero(~decided)
    if slow.size:
        theta[slow], _ = newton_strengths(
            counts.lo, counts.hi, wins[slow], totals[slow], np.tile(fit.strengths, (slow.size, 1))
        )
    every = np.arange(n_probes)
    gaps = theta[every, i] - theta[every, j]
    return np.asarray(gaps, dtype=np.float64)


def _removals(counts: PairCounts, removed: tuple[IntArray, IntArray]) -> tuple[Removal, ...]:
    made = []
    for kind, n in zip(*removed, strict=True):
        outcome, k = divmod(int(kind), counts.n_pairs)
        lo, hi = counts.models[int(counts.lo[k])], counts.models[int(counts.hi[k])]
        winner = (lo, None, hi)[outcome]
        made.append(Removal(models=(lo, hi), winner=winner, count=int(n)))
    return tuple(made)


def _search(
    counts: PairCounts, fit: BradleyTerryFit, inverse: FloatArray, plans: Sequence[_Plan]
) -> None:
    """Refit along each plan's greedy order until its smallest swapping count is bracketed."""
    for _ in range(_MAX_ROUNDS):
        probes: list[tuple[_Plan, int]] = []
        for plan in plans:
            if not plan.done:
                probes.extend((plan, n) for n in plan.next_probes())
        if not probes:
            return
        gaps = _refit_gaps(counts, fit, inverse, [(plan, plan.removed(n)) for plan, n in probes])
        for (plan, n), gap in zip(probes, gaps, strict=True):
            plan.record(n, float(gap))
    raise RuntimeError("the fragility search did not finish; this is a bug")


def _swap(counts: PairCounts, plan: _Plan) -> Swap:
    models = counts.models
    votes = plan.result
    removals = () if votes is None else _removals(counts, plan.removed(votes))
    return Swap(
        above=models[plan.i],
        below=models[plan.j],
        votes=votes,
        first_order_votes=plan.first_order,
        removals=removals,
    )


def _plans(
    pairs: Sequence[tuple[int, int]],
    gaps: FloatArray,
    changes: FloatArray,
    caps: IntArray,
    *,
    top: int,
) -> list[tuple[_Plan, bool]]:
    """A plan per pair compared, from `changes` (pairs compared x kinds of vote): its greedy
    order among the `top` most helpful kinds, and whether those are all the helpful ones."""
    helpful = (changes < 0) & (caps > 0)[None, :]
    n_helpful = helpful.sum(axis=1)
    if top < changes.shape[1]:
        masked = np.where(helpful, changes, 0.0)
        chosen = np.argpartition(masked, top - 1, axis=1)[:, :top]
    else:
        chosen = np.broadcast_to(np.arange(changes.shape[1]), changes.shape)
    made = []
    for t, (i, j) in enumerate(pairs):
        kinds = chosen[t][helpful[t, chosen[t]]]
        kinds = kinds[np.lexsort((kinds, changes[t, kinds]))]
        plan = _Plan(i, j, float(gaps[t]), changes[t, kinds], kinds, caps)
        made.append((plan, bool(kinds.size == n_helpful[t])))
    return made


def rank_fragility(counts: PairCounts, fit: BradleyTerryFit, order: Sequence[int]) -> Fragility:
    """The fewest votes whose removal swaps each adjacent pair of `order` (model indices, the
    table from the top), and first place: the least over the challengers of the leader (those
    whose first-order count is within FIRST_PLACE_SLACK of the smallest, or among the
    FIRST_PLACE_CANDIDATES closest, are refitted; the others cannot plausibly be closer)."""
    ranked_models = [int(i) for i in order]
    if len(ranked_models) < 2:
        return Fragility(adjacent=(), first_place=None)
    rank_of = {model: rank for rank, model in enumerate(ranked_models)}
    s = fit.strengths
    weights = _weights(counts.totals.astype(np.float64), fit.reweighted)
    inverse = strength_hessian_inverse(counts.lo, counts.hi, s, weights * counts.totals)
    caps = _reserved_caps(counts)
    leader = ranked_models[0]
    pairs = [
        *zip(ranked_models[:-1], ranked_models[1:], strict=True),
        *((leader, j) for j in ranked_models[2:]),
    ]
    m = counts.n_models
    directions = np.zeros((m, len(pairs)))
    columns = np.arange(len(pairs))
    directions[[i for i, _ in pairs], columns] = 1.0
    directions[[j for _, j in pairs], columns] = -1.0
    u = (inverse @ directions).T  # pairs compared x models
    along = u[:, counts.lo] - u[:, counts.hi]
    changes = np.tile(along, 3) * _score_changes(counts, s, fit.reweighted)[None, :]
    gaps = np.array([s[i] - s[j] for i, j in pairs])
    made = _plans(pairs, gaps, changes, caps, top=_TOP_KINDS)
    plans = [plan for plan, _ in made]
    partial = {t for t, (_, complete) in enumerate(made) if not complete}
    # How many times over removing every helpful vote would close the gap, to first order.
    reach = -np.minimum(changes, 0.0) @ caps.astype(np.float64) / np.maximum(gaps, SWAP_MARGIN)
    n_adjacent = len(ranked_models) - 1

    def key(t: int) -> tuple[float, float]:
        votes = plans[t].first_order
        return (math.inf if votes is None else votes, -float(reach[t]))

    ranked = sorted([0, *range(n_adjacent, len(pairs))], key=key)
    best = key(ranked[0])[0]
    chosen = [
        t
        for rank, t in enumerate(ranked)
        if t != 0 and (rank < FIRST_PLACE_CANDIDATES or key(t)[0] <= FIRST_PLACE_SLACK * best)
    ]
    searched = [*range(n_adjacent), *chosen]

    def complete(ts: Sequence[int]) -> None:
        """Plans on every helpful kind for `ts`, in place of their partial orders."""
        for t in ts:
            plans[t] = _plans(
                [pairs[t]], gaps[t : t + 1], changes[t : t + 1], caps, top=changes.shape[1]
            )[0][0]
            partial.discard(t)

    # A partial order that cannot close the gap to first order might with the kinds left out.
    complete([t for t in searched if t in partial and plans[t].first_order is None])
    _search(counts, fit, inverse, [plans[t] for t in searched])
    # Rare: a partial order that does not swap them even when all removed; try the full one.
    redo = [t for t in searched if plans[t].result is None and t in partial]
    if redo:
        complete(redo)
        _search(counts, fit, inverse, [plans[t] for t in redo])
    found = [t for t in [0, *chosen] if plans[t].result is not None]
    first = min(found, key=lambda t: (plans[t].result or 0, rank_of[pairs[t][1]])) if found else 0
    return Fragility(
        adjacent=tuple(_swap(counts, plans[t]) for t in range(n_adjacent)),
        first_place=_swap(counts, plans[first]),
    )
