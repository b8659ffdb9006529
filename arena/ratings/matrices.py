"""Pairwise tables: battle counts, win fractions, predicted win probabilities, win rates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from arena.ratings.battles import FloatArray, PairCounts
from arena.ratings.elo import BASE, SCALE


def _frame(values: FloatArray, models: Sequence[str]) -> pd.DataFrame:
    index = pd.Index(list(models), name="model_a")
    columns = pd.Index(list(models), name="model_b")
    return pd.DataFrame(values, index=index, columns=columns)


def _ordered(frame: pd.DataFrame, order: Sequence[str] | None) -> pd.DataFrame:
    if order is None:
        return frame
    return frame.loc[list(order), list(order)]


def battle_count_values(counts: PairCounts, *, include_ties: bool = True) -> FloatArray:
    """battle_count_matrix's values, rows and columns in the order of counts.models."""
    m = counts.n_models
    values = counts.totals if include_ties else counts.wins_lo + counts.wins_hi
    matrix = np.zeros((m, m))
    matrix[counts.lo, counts.hi] = values
    matrix[counts.hi, counts.lo] = values
    return matrix


def battle_count_matrix(
    counts: PairCounts, *, order: Sequence[str] | None = None, include_ties: bool = True
) -> pd.DataFrame:
    """Battles between each two models (symmetric, zero diagonal).

    FastChat's heatmap counts only decisive battles; pass include_ties=False for that.
    """
    values = battle_count_values(counts, include_ties=include_ties)
    return _ordered(_frame(values, counts.models), order)


def win_fraction_values(counts: PairCounts) -> FloatArray:
    """win_fraction_matrix's values, rows and columns in the order of counts.models."""
    m = counts.n_models
    decisive = (counts.wins_lo + counts.wins_hi).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo_share = np.where(decisive > 0, counts.wins_lo / decisive, np.nan)
    matrix = np.full((m, m), np.nan)
    matrix[counts.lo, counts.hi] = lo_share
    matrix[counts.hi, counts.lo] = np.where(decisive > 0, 1.0 - lo_share, np.nan)
    return matrix


def win_fraction_matrix(counts: PairCounts, *, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Share of the decisive battles between row and column that the row model won.

    Ties are left out, as in FastChat's `compute_pairwise_win_fraction`; NaN where two models never
    had a decisive battle, and on the diagonal.
    """
    return _ordered(_frame(win_fraction_values(counts), counts.models), order)


def predicted_win_values(
    ratings: FloatArray, *, scale: float = SCALE, base: float = BASE
) -> FloatArray:
    """P(row beats column) = 1 / (1 + base ** ((R_col - R_row) / scale)); NaN on the diagonal."""
    diff = (ratings[None, :] - ratings[:, None]) / scale
    matrix = 1.0 / (1.0 + np.power(base, diff))
    np.fill_diagonal(matrix, np.nan)
    return np.asarray(matrix, dtype=np.float64)


def predicted_win_matrix(
    ratings: pd.Series, *, scale: float = SCALE, base: float = BASE
) -> pd.DataFrame:
    """predicted_win_values over a ratings Series, labelled by its index."""
    values = predicted_win_values(ratings.to_numpy(dtype=np.float64), scale=scale, base=base)
    return _frame(values, [str(m) for m in ratings.index])


def votes_per_model(counts: PairCounts) -> pd.Series:
    """Battles each model took part in."""
    return pd.Series(counts.votes(), index=pd.Index(counts.models, name="model"), name="votes")


def average_win_rate(counts: PairCounts) -> pd.Series:
    """Mean over opponents of the row of the win-fraction matrix (FastChat's average win rate).

    Opponents without a decisive battle are skipped; NaN for a model with no decisive battle at all.
    """
    matrix = win_fraction_matrix(counts).to_numpy()
    seen = ~np.isnan(matrix)
    n_seen = seen.sum(axis=1)
    total = np.where(seen, matrix, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_seen > 0, total / np.maximum(n_seen, 1), np.nan)
    return pd.Series(rate, index=pd.Index(counts.models, name="model"), name="win_rate")
