"""A visitor's own leaderboard: Bradley-Terry ratings fitted on that visitor's votes alone.

A few dozen votes rarely make the maximum-likelihood fit exist (a model that never lost would
go to infinity, a pair of models never compared would split the graph), so the fit gets a prior
of `prior_ties` virtual ties between every two models the visitor met: the ratings exist for
any set of votes, are pulled toward each other by about as much as one real tie per pair, and
are the ordinary fit (`fit_bradley_terry`, DESIGN section 7) of that augmented table.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Final

import pandas as pd

from arena.ratings.battles import aggregate_battles
from arena.ratings.bradley_terry import fit_bradley_terry

# Counted votes before the personal board is shown: below this, the prior decides the order.
MIN_PERSONAL_VOTES: Final = 20
PRIOR_TIES: Final = 1


@dataclass(frozen=True)
class PersonalRating:
    model: str
    rating: float
    votes: int
    wins: int
    losses: int
    ties: int


def personal_ratings(
    battles: pd.DataFrame, *, prior_ties: int = PRIOR_TIES
) -> list[PersonalRating]:
    """Ratings (mean 1000, 400 points per factor of ten in odds) of every model in `battles`
    (columns model_a, model_b, winner), best first; ties of both kinds are half a win each."""
    if battles.empty:
        return []
    models = sorted(set(battles["model_a"]) | set(battles["model_b"]))
    prior = pd.DataFrame(
        [(a, b, "tie") for a, b in combinations(models, 2) for _ in range(prior_ties)],
        columns=["model_a", "model_b", "winner"],
    )
    table = pd.concat([battles[["model_a", "model_b", "winner"]], prior], ignore_index=True)
    if len(models) < 2:
        ratings = {models[0]: 1000.0}
    else:
        ratings = fit_bradley_terry(aggregate_battles(table)).as_series().to_dict()
    rows = []
    for model in models:
        as_a, as_b = battles["model_a"] == model, battles["model_b"] == model
        won = int(
            (
                (as_a & (battles["winner"] == "model_a"))
                | (as_b & (battles["winner"] == "model_b"))
            ).sum()
        )
        lost = int(
            (
                (as_a & (battles["winner"] == "model_b"))
                | (as_b & (battles["winner"] == "model_a"))
            ).sum()
        )
        votes = int((as_a | as_b).sum())
        rows.append(
            PersonalRating(
                model=model,
                rating=float(ratings[model]),
                votes=votes,
                wins=won,
                losses=lost,
                ties=votes - won - lost,
            )
        )
    rows.sort(key=lambda row: (-row.rating, row.model))
    return rows
