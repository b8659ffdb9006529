"""Bradley-Terry: closed forms, a per-battle logistic regression, invariances, recovery, errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from arena.ratings import (
    RatingsUndefined,
    aggregate_battles,
    bradley_terry_ratings,
    compute_leaderboard,
    fit_bradley_terry,
)
from arena.ratings.bradley_terry import (
    newton_strengths,
    refine_strengths,
    strength_hessian_inverse,
)
from tests.ratings.simulate import simulate_battles

POINTS = 400 / math.log(10)


def battles_from(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])


def logistic_regression_ratings(
    battles: pd.DataFrame, weights: np.ndarray | None = None
) -> pd.Series:
    """The textbook fit: one row per battle, x = e_a - e_b, y = 1, 0 or 1/2, scipy's trust-exact.

    The last model's strength is fixed at 0 to identify the model, then ratings are centred on 1000.
    """
    models = sorted(set(battles["model_a"]) | set(battles["model_b"]))
    index = {m: i for i, m in enumerate(models)}
    n, m = len(battles), len(models)
    x = np.zeros((n, m))
    x[np.arange(n), battles["model_a"].map(index)] = 1.0
    x[np.arange(n), battles["model_b"].map(index)] = -1.0
    x = x[:, :-1]
    y = battles["winner"].map({"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5})
    y = y.to_numpy()
    w = np.ones(n) if weights is None else weights

    def loss(theta: np.ndarray) -> float:
        d = x @ theta
        return float(np.sum(w * (np.logaddexp(0, d) - y * d)))

    def grad(theta: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-(x @ theta)))
        return x.T @ (w * (p - y))

    def hess(theta: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-(x @ theta)))
        return (x * (w * p * (1 - p))[:, None]).T @ x

    result = minimize(
        loss, np.zeros(m - 1), jac=grad, hess=hess, method="trust-exact", options={"gtol": 1e-13}
    )
    theta = np.append(result.x, 0.0)
    theta -= theta.mean()
    return pd.Series(1000 + POINTS * theta, index=models)


def test_two_models_closed_form() -> None:
    # A wins 3 of 4: P = 3/4 = sigmoid(d), d = ln 3, so A - B = 400 log10(3) = 190.8485 points.
    battles = battles_from(
        [("A", "B", "model_a")] * 2 + [("B", "A", "model_b"), ("B", "A", "model_a")]
    )
    ratings = bradley_terry_ratings(battles)
    assert ratings["A"] - ratings["B"] == pytest.approx(400 * math.log10(3), abs=1e-9)
    assert ratings.mean() == pytest.approx(1000, abs=1e-9)


def test_a_tie_is_half_a_win_for_each_side() -> None:
    with_ties = battles_from(
        [
            ("A", "B", "model_a"),
            ("A", "B", "model_a"),
            ("A", "B", "tie"),
            ("B", "A", "tie (bothbad)"),
        ]
    )
    ratings = bradley_terry_ratings(with_ties)
    assert ratings["A"] - ratings["B"] == pytest.approx(400 * math.log10(3), abs=1e-9)


def test_matches_a_per_battle_logistic_regression() -> None:
    rng = np.random.default_rng(11)
    battles = simulate_battles(rng.normal(0, 0.8, 6), 400, rng, tie_share=0.2)
    ours = bradley_terry_ratings(battles)
    reference = logistic_regression_ratings(battles)
    assert ours.sort_index().to_numpy() == pytest.approx(reference.to_numpy(), abs=1e-6)


def test_reweighted_matches_a_weighted_logistic_regression() -> None:
    rng = np.random.default_rng(12)
    battles = simulate_battles(rng.normal(0, 0.8, 5), 300, rng, tie_share=0.1)
    # Unequal pair counts, some above arena-rank's floor of 50, so the weights differ.
    extra = simulate_battles(np.array([0.3, -0.2]), 240, rng, names=["model-00", "model-01"])
    battles = pd.concat([battles, extra], ignore_index=True)
    pair = battles[["model_a", "model_b"]].apply(lambda r: tuple(sorted(r)), axis=1)
    pair_count = pair.map(pair.value_counts())
    weights = 1.0 / np.maximum(pair_count.to_numpy(dtype=float), 50)
    ours = bradley_terry_ratings(battles, reweighted=True)
    reference = logistic_regression_ratings(battles, weights)
    assert ours.sort_index().to_numpy() == pytest.approx(reference.to_numpy(), abs=1e-6)
    assert not np.allclose(ours.sort_index().to_numpy(), bradley_terry_ratings(battles).to_numpy())


def test_scale_base_and_init_are_parameters() -> None:
    battles = battles_from([("A", "B", "model_a")] * 3 + [("A", "B", "model_b")])
    ratings = bradley_terry_ratings(battles, scale=1.0, base=math.e, init=0.0)
    assert ratings["A"] == pytest.approx(math.log(3) / 2, abs=1e-12)


def test_independent_of_battle_order_and_of_sides() -> None:
    rng = np.random.default_rng(5)
    battles = simulate_battles(rng.normal(0, 1, 7), 3000, rng, tie_share=0.15)
    base = bradley_terry_ratings(battles)
    shuffled = battles.sample(frac=1.0, random_state=3)
    swapped = battles.rename(columns={"model_a": "model_b", "model_b": "model_a"})
    swapped["winner"] = swapped["winner"].replace({"model_a": "model_b", "model_b": "model_a"})
    assert bradley_terry_ratings(shuffled).to_numpy() == pytest.approx(base.to_numpy(), abs=1e-9)
    assert bradley_terry_ratings(swapped).to_numpy() == pytest.approx(base.to_numpy(), abs=1e-9)


def test_recovers_known_strengths() -> None:
    rng = np.random.default_rng(21)
    truth = rng.normal(0, 1, 8)
    battles = simulate_battles(truth, 200_000, rng)
    board = compute_leaderboard(battles).to_frame().set_index("model").sort_index()
    true_ratings = 1000 + POINTS * (truth - truth.mean())
    error = board["rating"].to_numpy() - true_ratings
    half_width = (board["ci_upper"] - board["ci_lower"]).to_numpy() / 2
    assert np.abs(error).max() < 6.0
    # Each estimate within its own 99.99% band (z = 3.9), with the fixed seed.
    assert np.all(np.abs(error) < half_width * 3.9 / 1.96)


def test_mean_is_init_and_anchor_shifts_everything() -> None:
    rng = np.random.default_rng(2)
    battles = simulate_battles(rng.normal(0, 1, 5), 2000, rng)
    plain = compute_leaderboard(battles).to_frame().set_index("model")
    assert plain["rating"].mean() == pytest.approx(1000, abs=1e-9)
    anchored = (
        compute_leaderboard(battles, anchor=("model-03", 1114.0)).to_frame().set_index("model")
    )
    assert anchored.loc["model-03", "rating"] == pytest.approx(1114.0, abs=1e-9)
    shift = 1114.0 - plain.loc["model-03", "rating"]
    for column in ("rating", "ci_lower", "ci_upper"):
        assert anchored[column].to_numpy() == pytest.approx(plain[column].to_numpy() + shift)
    assert anchored["rank"].tolist() == plain["rank"].tolist()


def test_the_fit_is_the_maximum() -> None:
    rng = np.random.default_rng(9)
    battles = simulate_battles(rng.normal(0, 1.5, 6), 1500, rng, tie_share=0.1)
    counts = aggregate_battles(battles)
    fit = fit_bradley_terry(counts)
    wins = counts.wins_lo + 0.5 * counts.ties
    p = 1 / (1 + np.exp(fit.strengths[counts.hi] - fit.strengths[counts.lo]))
    residual = wins - counts.totals * p
    gradient = np.bincount(counts.lo, residual, 6) - np.bincount(counts.hi, residual, 6)
    assert np.abs(gradient).max() < 1e-9


def test_a_model_that_never_lost_is_named() -> None:
    battles = battles_from(
        [("A", "B", "model_a"), ("B", "C", "model_a"), ("C", "B", "model_a"), ("C", "A", "model_b")]
    )
    with pytest.raises(RatingsUndefined, match=r"'A' never lost") as caught:
        bradley_terry_ratings(battles)
    # With A unbeaten, the others as a group never beat an outsider either: both are named.
    assert "['B', 'C'] never beat a model outside that group" in str(caught.value)
    assert sorted(caught.value.models) == ["A", "B", "C"]


def test_a_model_that_never_won_is_named() -> None:
    battles = battles_from(
        [("A", "B", "model_a"), ("B", "A", "model_a"), ("C", "A", "model_b"), ("B", "C", "model_a")]
    )
    with pytest.raises(RatingsUndefined, match=r"'C' never won"):
        bradley_terry_ratings(battles)


def test_a_group_that_never_lost_to_outsiders_is_named() -> None:
    battles = battles_from(
        [
            ("A", "B", "model_a"),
            ("B", "A", "model_a"),
            ("A", "C", "model_a"),
            ("C", "D", "model_a"),
            ("D", "C", "model_a"),
        ]
    )
    with pytest.raises(RatingsUndefined, match=r"\['A', 'B'\] never lost to a model outside"):
        bradley_terry_ratings(battles)


def test_a_split_comparison_graph_is_named() -> None:
    battles = battles_from(
        [("A", "B", "model_a"), ("B", "A", "model_a"), ("C", "D", "model_a"), ("D", "C", "tie")]
    )
    with pytest.raises(
        RatingsUndefined, match=r"2 groups .* never met.*\['A', 'B'\]; \['C', 'D'\]"
    ):
        bradley_terry_ratings(battles)


def test_ties_alone_make_ratings_exist() -> None:
    ratings = bradley_terry_ratings(battles_from([("A", "B", "tie")]))
    assert ratings["A"] == ratings["B"] == 1000


@st.composite
def tournaments(draw: st.DrawFn) -> pd.DataFrame:
    m = draw(st.integers(2, 5))
    names = [f"m{i}" for i in range(m)]
    # A ring of ties keeps every tournament connected and every rating finite.
    rows = [(names[i], names[(i + 1) % m], "tie") for i in range(m)]
    extra = draw(
        st.lists(
            st.tuples(
                st.integers(0, m - 1),
                st.integers(1, m - 1),
                st.sampled_from(["model_a", "model_b", "tie", "tie (bothbad)"]),
            ),
            max_size=30,
        )
    )
    rows += [(names[a], names[(a + d) % m], w) for a, d, w in extra]
    return battles_from(rows)


@settings(max_examples=60, deadline=None)
@given(tournaments())
def test_random_tournaments_ignore_sides_and_match_regression(battles: pd.DataFrame) -> None:
    ours = bradley_terry_ratings(battles)
    swapped = battles.rename(columns={"model_a": "model_b", "model_b": "model_a"})
    swapped["winner"] = swapped["winner"].replace({"model_a": "model_b", "model_b": "model_a"})
    assert bradley_terry_ratings(swapped).to_numpy() == pytest.approx(ours.to_numpy(), abs=1e-8)
    reference = logistic_regression_ratings(battles)
    assert ours.sort_index().to_numpy() == pytest.approx(reference.to_numpy(), abs=1e-5)


def test_bootstrap_refits_land_on_each_resamples_maximum() -> None:
    # The chord refits of the bootstrap, near and far from the full-data fit, against Newton's
    # own iterations from zero and against the gradient of each resample's likelihood.
    rng = np.random.default_rng(4)
    counts = aggregate_battles(simulate_battles(rng.normal(0, 1, 8), 4000, rng, tie_share=0.1))
    fit = fit_bradley_terry(counts)
    totals = counts.totals.astype(np.float64)
    shares = counts.totals / counts.n_battles
    resampled = rng.multinomial(counts.n_battles, shares, size=40).astype(np.float64)
    win_share = (counts.wins_lo + 0.5 * counts.ties) / counts.totals
    wins = resampled * win_share
    # Resamples far from the data: every result reversed (its first step is too large to trust,
    # so Newton finishes it), and one pair's wins moved a long way.
    wins[0] = resampled[0] * (1.0 - win_share)
    wins[1, 0] = 0.02 * resampled[1, 0]
    inverse = strength_hessian_inverse(counts.lo, counts.hi, fit.strengths, totals)
    start = np.tile(fit.strengths, (40, 1))
    refined = refine_strengths(counts.lo, counts.hi, wins, resampled, start, inverse)
    exact, _ = newton_strengths(counts.lo, counts.hi, wins, resampled, np.zeros_like(start))
    assert np.abs(refined - exact).max() < 1e-9
    p = 1 / (1 + np.exp(refined[:, counts.hi] - refined[:, counts.lo]))
    residual = wins - resampled * p
    gradient = np.stack(
        [np.bincount(counts.lo, r, 8) - np.bincount(counts.hi, r, 8) for r in residual]
    )
    assert np.abs(gradient).max() < 1e-7
    # Strengths keep the mean of where they started (the gauge).
    assert refined.mean(axis=1) == pytest.approx(np.full(40, fit.strengths.mean()), abs=1e-12)
    assert refine_strengths(
        counts.lo, counts.hi, wins[:0], resampled[:0], start[:0], inverse
    ).shape == (0, 8)
