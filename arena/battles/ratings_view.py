"""The latest overall rating snapshot as the battle flow reads it: each model's rating and votes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import RatingSnapshot

# The table the leaderboard leads with: Bradley-Terry over every counted vote.
METHOD: Final = "bt"
CATEGORY: Final = "all"
# Where the recompute job stores, in that table's extras, the gain of one more vote on each pair
# of rated models (arena/ratings/active_sampling.py), for the active sampler.
GAINS_KEY: Final = "sampling_gains"


@dataclass(frozen=True)
class RatedModel:
    rating: float
    votes: int


def rated_models(rows: list[Any]) -> dict[str, RatedModel]:
    """Snapshot rows (dicts with model, rating, votes, ...) by model name; others skipped."""
    rated: dict[str, RatedModel] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        name, rating, votes = row.get("model"), row.get("rating"), row.get("votes")
        if isinstance(name, str) and isinstance(rating, int | float):
            rated[name] = RatedModel(float(rating), int(votes) if isinstance(votes, int) else 0)
    return rated


_LATEST_ROWS = (
    select(RatingSnapshot.rows)
    .where(
        RatingSnapshot.method == METHOD,
        RatingSnapshot.category == CATEGORY,
        RatingSnapshot.view == "",  # the plain view: no exclusions
    )
    .order_by(RatingSnapshot.computed_at.desc(), RatingSnapshot.id.desc())
    .limit(1)
)


def read_latest_ratings(connection: Connection) -> dict[str, RatedModel]:
    """Empty until the first snapshot is stored."""
    rows = connection.execute(_LATEST_ROWS).scalar()
    return rated_models(rows) if isinstance(rows, list) else {}


async def latest_ratings(session: AsyncSession) -> dict[str, RatedModel]:
    return await session.run_sync(lambda sync: read_latest_ratings(sync.connection()))
