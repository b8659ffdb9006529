"""Intervals: the sandwich formula from first principles, coverage, bootstrap law, rank bounds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from arena.ratings import (
    RatingsUndefined,
    aggregate_battles,
    bradley_terry_ratings,
    compute_leaderboard,
    fit_bradley_terry,
    rank_upper_bound,
    sandwich_intervals,
)
from arena.ratings.intervals import bootstrap_bradley_terry
from tests.ratings.simulate import simulate_battles

POINTS = 400 / math.log(10)
Z = 1.959963984540054


def per_battle_sandwich(
    battles: pd.DataFrame, ratings: pd.Series, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """DESIGN section 7's sandwich written over single battles rather than aggregated cells.

    x = e_a - e_b, y = 1, 0 or 1/2, p = sigmoid(x . theta); H = sum c p (1 - p) x x^T + ridge I,
    G = sum (c (y - p))^2 x x^T; covariance H^-1 G H^-1; ridge = 1e-5 * battles when unweighted.
    """
    models = list(ratings.sort_index().index)
    theta = (ratings.sort_index().to_numpy() - 1000) / POINTS
    index = {m: i for i, m in enumerate(models)}
    n, m = len(battles), len(models)
    x = np.zeros((n, m))
    x[np.arange(n), battles["model_a"].map(index)] = 1.0
    x[np.arange(n), battles["model_b"].map(index)] = -1.0
    y = battles["winner"].map({"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5})
    c = np.ones(n) if weights is None else weights
    p = 1 / (1 + np.exp(-(x @ theta)))
    ridge = 1e-5 * (n if weights is None else 1.0)
    h = (x * (c * p * (1 - p))[:, None]).T @ x + ridge * np.eye(m)
    g = (x * ((c * (y.to_numpy() - p)) ** 2)[:, None]).T @ x
    h_inv = np.linalg.inv(h)
    half = Z * POINTS * np.sqrt(np.diag(h_inv @ g @ h_inv))
    rating = ratings.sort_index().to_numpy()
    return rating - half, rating + half


def test_sandwich_equals_the_per_battle_formula() -> None:
    rng = np.random.default_rng(3)
    battles = simulate_battles(rng.normal(0, 1, 6), 3000, rng, tie_share=0.2)
    counts = aggregate_battles(battles)
    fit = fit_bradley_terry(counts)
    intervals = sandwich_intervals(counts, fit)
    lower, upper = per_battle_sandwich(battles, fit.as_series())
    # The plain inverse multiplies G's rounding along the all-ones vector by 1 / ridge^2, which
    # leaves it unsure in the 1e-5 digits; arena-rank's numbers carry the same noise.
    assert intervals.lower == pytest.approx(lower, abs=1e-4)
    assert intervals.upper == pytest.approx(upper, abs=1e-4)


def test_reweighted_sandwich_equals_the_per_battle_formula() -> None:
    rng = np.random.default_rng(4)
    battles = simulate_battles(rng.normal(0, 1, 5), 1200, rng, tie_share=0.1)
    pair = battles[["model_a", "model_b"]].apply(lambda r: tuple(sorted(r)), axis=1)
    weights = 1.0 / np.maximum(pair.map(pair.value_counts()).to_numpy(dtype=float), 50)
    counts = aggregate_battles(battles)
    fit = fit_bradley_terry(counts, reweighted=True)
    intervals = sandwich_intervals(counts, fit)
    lower, upper = per_battle_sandwich(battles, fit.as_series(), weights)
    assert intervals.lower == pytest.approx(lower, abs=1e-4)
    assert intervals.upper == pytest.approx(upper, abs=1e-4)


def coverage(bootstrap_rounds: int | None, reps: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    truth = np.array([0.6, 0.3, 0.0, -0.2, -0.7])
    centred = 1000 + POINTS * (truth - truth.mean())
    hits = 0
    for _ in range(reps):
        battles = simulate_battles(truth, 1500, rng)
        board = compute_leaderboard(
            battles, bootstrap_rounds=bootstrap_rounds, seed=int(rng.integers(1 << 31))
        )
        frame = board.to_frame().set_index("model").sort_index()
        hits += int(np.sum((frame["ci_lower"] <= centred) & (centred <= frame["ci_upper"])))
    return hits / (reps * truth.shape[0])


def test_sandwich_intervals_cover_the_truth_95_percent_of_the_time() -> None:
    # 300 simulations x 5 models; the share's standard error is about 0.6 points.
    assert 0.93 <= coverage(None, reps=300, seed=101) <= 0.97


def test_bootstrap_intervals_cover_the_truth_95_percent_of_the_time() -> None:
    assert 0.92 <= coverage(200, reps=120, seed=202) <= 0.975


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    rng = np.random.default_rng(1)
    battles = simulate_battles(rng.normal(0, 1, 5), 2000, rng)
    one = compute_leaderboard(battles, bootstrap_rounds=50, seed=9).to_json_dict()
    two = compute_leaderboard(battles, bootstrap_rounds=50, seed=9).to_json_dict()
    other = compute_leaderboard(battles, bootstrap_rounds=50, seed=10).to_json_dict()
    assert one == two
    assert one["models"] != other["models"]
    assert one["params"]["interval"] == "bootstrap"
    # The rating is the full-data fit whatever the resamples, as FastChat reports it.
    assert [m["rating"] for m in one["models"]] == [m["rating"] for m in other["models"]]


def test_multinomial_counts_resample_like_battle_rows() -> None:
    # The naive bootstrap copies the table with replacement and refits; ours draws counts.
    rng = np.random.default_rng(6)
    battles = simulate_battles(np.array([0.5, 0.0, -0.4, 0.2]), 2000, rng, tie_share=0.2)
    counts = aggregate_battles(battles)
    fit = fit_bradley_terry(counts)
    ours, _ = bootstrap_bradley_terry(counts, fit, rounds=400, rng=np.random.default_rng(1))
    naive = np.array(
        [
            bradley_terry_ratings(battles.sample(frac=1.0, replace=True, random_state=i)).to_numpy()
            for i in range(400)
        ]
    )
    # Standard errors of the two estimates of the spread are about 3.5% each.
    assert ours.std(axis=0) == pytest.approx(naive.std(axis=0), rel=0.15)
    assert ours.mean(axis=0) == pytest.approx(naive.mean(axis=0), abs=3.0)


def test_bootstrap_and_sandwich_agree_on_plenty_of_data() -> None:
    rng = np.random.default_rng(12)
    battles = simulate_battles(rng.normal(0, 1, 6), 50_000, rng, tie_share=0.1)
    sandwich = compute_leaderboard(battles).to_frame()
    boot = compute_leaderboard(battles, bootstrap_rounds=400, seed=3).to_frame()
    width_s = (sandwich["ci_upper"] - sandwich["ci_lower"]).to_numpy()
    width_b = (boot["ci_upper"] - boot["ci_lower"]).to_numpy()
    assert width_b == pytest.approx(width_s, rel=0.15)


def test_thin_data_redraws_resamples_without_a_finite_fit() -> None:
    battles = pd.DataFrame(
        {
            "model_a": ["A", "B", "A", "C", "B", "C"] * 2,
            "model_b": ["B", "A", "C", "A", "C", "B"] * 2,
            "winner": ["model_a"] * 12,
        }
    )
    counts = aggregate_battles(battles)
    fit = fit_bradley_terry(counts)
    # About 4.6 % of resamples leave a model without a win or a loss: 200 rounds redraw some
    # whatever the seed, bar a chance of 1e-4.
    samples, redrawn = bootstrap_bradley_terry(
        counts, fit, rounds=200, rng=np.random.default_rng(0)
    )
    assert samples.shape == (200, 3)
    assert np.isfinite(samples).all()
    assert redrawn > 0


def test_hopeless_data_say_to_use_the_sandwich() -> None:
    # A five-cycle of single wins: a resample keeps a finite fit only if it draws every battle,
    # which happens 5! / 5^5 = 3.8% of the time.
    names = ["A", "B", "C", "D", "E"]
    battles = pd.DataFrame(
        {"model_a": names, "model_b": names[1:] + names[:1], "winner": ["model_a"] * 5}
    )
    with pytest.raises(RatingsUndefined, match="sandwich"):
        compute_leaderboard(battles, bootstrap_rounds=100, seed=1)


def test_rank_upper_bound_counts_models_clearly_above() -> None:
    lower = np.array([1100.0, 1090.0, 1040.0, 1000.0])
    upper = np.array([1120.0, 1110.0, 1095.0, 1030.0])
    # Model 2's upper bound 1095 is below model 0's lower bound 1100; model 3's 1030 is below
    # the lower bounds of models 0, 1 and 2.
    assert rank_upper_bound(lower, upper).tolist() == [1, 1, 2, 4]
    assert rank_upper_bound(np.array([5.0, 5.0]), np.array([5.0, 5.0])).tolist() == [1, 1]
