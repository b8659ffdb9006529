"""Pairwise tables checked against FastChat-style pivot tables built here from the rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arena.ratings import (
    aggregate_battles,
    average_win_rate,
    battle_count_matrix,
    predicted_win_matrix,
    votes_per_model,
    win_fraction_matrix,
)
from tests.ratings.simulate import simulate_battles


def pivot_win_fraction(battles: pd.DataFrame) -> pd.DataFrame:
    decisive = battles[~battles["winner"].str.startswith("tie")]
    a_wins = pd.pivot_table(
        decisive[decisive["winner"] == "model_a"],
        index="model_a",
        columns="model_b",
        aggfunc="size",
    )
    b_wins = pd.pivot_table(
        decisive[decisive["winner"] == "model_b"],
        index="model_a",
        columns="model_b",
        aggfunc="size",
    )
    played = pd.pivot_table(decisive, index="model_a", columns="model_b", aggfunc="size")
    models = sorted(set(battles["model_a"]) | set(battles["model_b"]))

    def full(t: pd.DataFrame) -> pd.DataFrame:
        return t.reindex(index=models, columns=models).fillna(0)

    with np.errstate(invalid="ignore"):
        return (full(a_wins) + full(b_wins).T) / (full(played) + full(played).T)


def test_win_fraction_and_counts_match_pivot_tables() -> None:
    rng = np.random.default_rng(0)
    battles = simulate_battles(rng.normal(0, 1, 5), 600, rng, tie_share=0.2)
    counts = aggregate_battles(battles)
    ours = win_fraction_matrix(counts)
    expected = pivot_win_fraction(battles)
    assert np.allclose(ours.to_numpy(), expected.to_numpy(), equal_nan=True)
    assert np.isnan(np.diag(ours.to_numpy())).all()

    both_ways = pd.crosstab(battles["model_a"], battles["model_b"])
    both_ways = both_ways.add(both_ways.T, fill_value=0)
    assert np.array_equal(battle_count_matrix(counts).to_numpy(), both_ways.to_numpy())
    decisive = battle_count_matrix(counts, include_ties=False).to_numpy().sum() / 2
    assert decisive == (~battles["winner"].str.startswith("tie")).sum()

    rates = average_win_rate(counts)
    assert rates.to_numpy() == pytest.approx(expected.mean(axis=1, skipna=True).to_numpy())
    votes = pd.concat([battles["model_a"], battles["model_b"]]).value_counts().sort_index()
    assert votes_per_model(counts).tolist() == votes.tolist()


def test_predicted_win_probability() -> None:
    ratings = pd.Series({"A": 1400.0, "B": 1000.0, "C": 1000.0})
    matrix = predicted_win_matrix(ratings)
    # 400 points apart: 10 to 1.
    assert matrix.loc["A", "B"] == pytest.approx(10 / 11)
    assert matrix.loc["B", "A"] == pytest.approx(1 / 11)
    assert matrix.loc["B", "C"] == 0.5
    assert np.isnan(matrix.loc["A", "A"])


def test_order_and_missing_pairs() -> None:
    battles = pd.DataFrame(
        {"model_a": ["A", "B"], "model_b": ["B", "C"], "winner": ["model_a", "tie"]}
    )
    counts = aggregate_battles(battles)
    matrix = win_fraction_matrix(counts, order=["C", "B", "A"])
    assert list(matrix.index) == ["C", "B", "A"]
    assert np.isnan(matrix.loc["C", "A"])
    assert np.isnan(matrix.loc["B", "C"])
    assert matrix.loc["A", "B"] == 1.0
    rates = average_win_rate(counts)
    assert rates["A"] == 1.0 and rates["B"] == 0.0 and np.isnan(rates["C"])
