"""Active sampling maths: pair gains against a brute-force recomputation, and planned shares."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arena.ratings.active_sampling import (
    all_pairs,
    blend_shares,
    centred_covariance,
    model_shares,
    pair_gains,
    weighted_pair_shares,
)
from arena.ratings.battles import PairCounts


def _counts(n_models: int, votes: dict[tuple[int, int], tuple[int, int, int]]) -> PairCounts:
    pairs = sorted(votes)
    return PairCounts(
        models=tuple(f"m{i}" for i in range(n_models)),
        lo=np.array([a for a, _ in pairs], dtype=np.int64),
        hi=np.array([b for _, b in pairs], dtype=np.int64),
        wins_lo=np.array([votes[p][0] for p in pairs], dtype=np.int64),
        ties=np.array([votes[p][1] for p in pairs], dtype=np.int64),
        wins_hi=np.array([votes[p][2] for p in pairs], dtype=np.int64),
    )


def _information(m: int, votes: np.ndarray, strengths: np.ndarray) -> np.ndarray:
    """sum_k n_k p_k (1 - p_k) x_k x_k^T written out pair by pair."""
    info = np.zeros((m, m))
    lo, hi = all_pairs(m)
    for k, (a, b) in enumerate(zip(lo, hi, strict=True)):
        p = 1 / (1 + math.exp(strengths[b] - strengths[a]))
        x = np.zeros(m)
        x[a], x[b] = 1.0, -1.0
        info += votes[k] * p * (1 - p) * np.outer(x, x)
    return info


def test_two_equal_models_by_hand() -> None:
    # n votes at p = 1/2: F = n/4 [[1, -1], [-1, 1]], so C = F^+ = 1/n [[1, -1], [-1, 1]].
    n = 40
    information = _information(2, np.array([n]), np.zeros(2))
    assert centred_covariance(information) == pytest.approx(np.array([[1, -1], [-1, 1]]) / n)
    gains = pair_gains(_counts(2, {(0, 1): (15, 10, 15)}), np.zeros(2), rank_weight=0.0)
    # One pair takes the whole gain; with the ranking part too, 1 + rank_weight.
    assert gains.gain.tolist() == pytest.approx([1.0])
    assert gains.votes.tolist() == [40]
    both = pair_gains(_counts(2, {(0, 1): (15, 10, 15)}), np.zeros(2), rank_weight=0.5)
    assert both.gain.tolist() == pytest.approx([1.5])


def test_width_gains_are_the_fall_of_the_weighted_variances() -> None:
    """Against a brute-force recomputation: add one vote to each pair, invert again, and measure
    how much sum_i C_ii^2 / 2 falls to first order (weights C_ii held at their current values)."""
    strengths = np.array([0.9, 0.3, 0.0, -0.2, -1.1])
    votes = {(0, 1): (30, 5, 10), (1, 2): (12, 4, 9), (2, 3): (20, 8, 18), (0, 4): (9, 0, 1)}
    votes |= {(3, 4): (14, 2, 6), (1, 3): (3, 1, 2)}
    counts = _counts(5, votes)
    gains = pair_gains(counts, strengths, width_power=2.0, rank_weight=0.0)
    lo, hi = all_pairs(5)
    n = gains.votes.astype(float)
    before = np.linalg.pinv(_information(5, n, strengths))
    weight = np.diag(before)
    falls = []
    for k in range(lo.shape[0]):
        more = n.copy()
        more[k] += 1
        after = np.linalg.pinv(_information(5, more, strengths))
        falls.append(float(weight @ (np.diag(before) - np.diag(after))))
    expected = np.array(falls) / sum(falls)
    assert gains.gain == pytest.approx(expected, rel=1e-6)
    # A pair never met (0, 2) still has a gain; the loneliest model's pairs gain most.
    assert gains.votes[list(zip(lo, hi, strict=True)).index((0, 2))] == 0
    assert np.all(gains.gain > 0)


def test_gains_follow_the_models_when_relabelled() -> None:
    strengths = np.array([0.5, 0.1, -0.6])
    counts = _counts(3, {(0, 1): (10, 3, 7), (1, 2): (9, 2, 4), (0, 2): (5, 0, 1)})
    # Reverse the labels: model i becomes 2 - i, so pair (a, b) becomes (2 - b, 2 - a).
    flipped = _counts(3, {(1, 2): (7, 3, 10), (0, 1): (4, 2, 9), (0, 2): (1, 0, 5)})
    gains = pair_gains(counts, strengths)
    mirrored = pair_gains(flipped, strengths[::-1].copy())
    keys = zip(gains.lo.tolist(), gains.hi.tolist(), strict=True)
    by_pair = dict(zip(keys, gains.gain, strict=True))
    for a, b, g in zip(mirrored.lo.tolist(), mirrored.hi.tolist(), mirrored.gain, strict=True):
        assert g == pytest.approx(by_pair[(2 - b, 2 - a)])


def test_more_votes_on_a_pair_lower_its_gain() -> None:
    strengths = np.zeros(4)
    few = {(0, 1): (5, 0, 5), (2, 3): (5, 0, 5), (0, 2): (5, 0, 5), (1, 3): (5, 0, 5)}
    many = few | {(0, 1): (50, 0, 50)}
    lo, hi = all_pairs(4)
    pair = list(zip(lo.tolist(), hi.tolist(), strict=True)).index((0, 1))
    twin = list(zip(lo.tolist(), hi.tolist(), strict=True)).index((2, 3))
    balanced = pair_gains(_counts(4, few), strengths)
    assert balanced.gain[pair] == pytest.approx(balanced.gain[twin])
    lopsided = pair_gains(_counts(4, many), strengths)
    assert lopsided.gain[pair] < lopsided.gain[twin]


def test_gains_need_one_strength_per_model() -> None:
    with pytest.raises(ValueError, match="2 strengths for 3 models"):
        pair_gains(_counts(3, {(0, 1): (1, 0, 1), (1, 2): (1, 0, 1)}), np.zeros(2))


def test_blend_keeps_the_floor_and_the_operators_zero() -> None:
    weighted = weighted_pair_shares(np.array([1.0, 1.0, 1.0, 0.0]), *all_pairs(4))
    lo, hi = all_pairs(4)
    # Pairs: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); model 3 has weight 0.
    gain = np.array([1.0, 0.0, 5.0, 0.0, 5.0, 5.0])
    rated = np.ones(6, dtype=bool)
    shares = blend_shares(weighted, gain, rated, floor=0.3, sharpness=1.0)
    assert shares.sum() == pytest.approx(1.0)
    assert shares[[2, 4, 5]].tolist() == [0.0, 0.0, 0.0]  # weight 0: never drawn
    # 0.3 spread over the 3 drawable pairs, 0.7 to the only positive gain among them.
    assert shares[[0, 1, 3]] == pytest.approx([0.1 + 0.7, 0.1, 0.1])
    assert model_shares(shares, lo, hi, 4) == pytest.approx([0.45, 0.45, 0.1, 0.0])


def test_unrated_pairs_keep_their_weighted_share() -> None:
    weights = np.array([1.0, 1.0, 4.0])  # model 2 is new: boosted, no rating yet
    lo, hi = all_pairs(3)
    weighted = weighted_pair_shares(weights, lo, hi)
    rated = np.array([True, False, False])
    shares = blend_shares(weighted, np.array([2.0, 0.0, 0.0]), rated, floor=0.0)
    assert shares == pytest.approx(weighted)
    assert shares[1:] == pytest.approx([4 / 9, 4 / 9])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 10.0), min_size=3, max_size=12),
    st.floats(0.0, 1.0),
    st.floats(0.25, 8.0),
    st.data(),
)
def test_no_drawable_pair_falls_below_the_floor(
    weights: list[float], floor: float, sharpness: float, data: st.DataObject
) -> None:
    m = len(weights)
    lo, hi = all_pairs(m)
    weighted = weighted_pair_shares(np.array(weights), lo, hi)
    n = lo.shape[0]
    gain = np.array(data.draw(st.lists(st.floats(0.0, 1e6), min_size=n, max_size=n)))
    rated = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    shares = blend_shares(weighted, gain, rated, floor=floor, sharpness=sharpness)
    drawable = weighted > 0
    if not drawable.any():
        assert shares.sum() == 0
        return
    assert shares.sum() == pytest.approx(1.0)
    assert np.all(shares[~drawable] == 0)
    assert np.all(shares[drawable] >= floor / drawable.sum() * (1 - 1e-12))


def test_blend_refuses_a_floor_outside_0_to_1() -> None:
    with pytest.raises(ValueError, match="floor must be between 0 and 1; got 1.5"):
        blend_shares(np.ones(1), np.ones(1), np.ones(1, dtype=bool), floor=1.5)


def test_the_ranking_weight_uses_the_normal_density() -> None:
    from scipy.stats import norm

    from arena.ratings.active_sampling import _normal_density

    z = np.linspace(-40, 40, 8001)
    assert np.allclose(_normal_density(z), norm.pdf(z), rtol=1e-13, atol=0)
