"""Choosing which two models meet in a battle, and on which side each sits (DESIGN section 6).

A pair {i, j} is drawn with probability proportional to w_i * w_j, where w is the operator's
`sampling_weight` of the model, multiplied by `new_model_boost` while the model has fewer counted
votes than `new_model_vote_target` (FastChat's battle targets serve the same end: a new model
gets enough votes for a rating soon, then competes like the others).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.ratings_view import RatedModel, read_latest_ratings
from arena.config import Settings
from arena.errors import NoModelsAvailable
from arena.models import Model, ModelStatus

T = TypeVar("T")

_rng = random.SystemRandom()  # visitors must not be able to predict the pairing


def draw_pair(
    candidates: Sequence[T], rng: random.Random = _rng, weights: Sequence[float] | None = None
) -> tuple[T, T]:
    """An unordered pair with probability proportional to the product of the two weights
    (uniform without weights), then sides at random: (side A, side B)."""
    if weights is None:
        if len(candidates) < 2:
            raise NoModelsAvailable()
        first, second = rng.sample(list(candidates), 2)
        return first, second
    if len(weights) != len(candidates):
        raise ValueError(f"{len(weights)} weights for {len(candidates)} candidates")
    drawable = [(c, w) for c, w in zip(candidates, weights, strict=True) if w > 0]
    if len(drawable) < 2:
        raise NoModelsAvailable()
    items = [c for c, _ in drawable]
    cumulative = [w for _, w in drawable]
    for i in range(1, len(cumulative)):
        cumulative[i] += cumulative[i - 1]
    # Two independent draws by weight, again while they coincide: an ordered pair (i, j), i != j,
    # comes out with probability proportional to w_i * w_j, the same for (j, i), so the sides are
    # random too. The expected number of rounds stays small unless one weight dwarfs the rest.
    while True:
        i, j = rng.choices(range(len(items)), cum_weights=cumulative, k=2)
        if i != j:
            return items[i], items[j]


@dataclass(frozen=True)
class Candidate:
    """An active model as the sampler sees it; `weight` is what draw_pair uses."""

    model_id: int
    name: str
    sampling_weight: float
    votes: int
    boosted: bool
    weight: float


def effective_weight(sampling_weight: float, votes: int, settings: Settings) -> tuple[float, bool]:
    boosted = votes < settings.new_model_vote_target and sampling_weight > 0
    return (sampling_weight * settings.new_model_boost if boosted else sampling_weight), boosted


def candidates_from(
    models: Sequence[tuple[int, str, float]], rated: Mapping[str, RatedModel], settings: Settings
) -> list[Candidate]:
    made = []
    for model_id, name, sampling_weight in models:
        votes = rated[name].votes if name in rated else 0
        weight, boosted = effective_weight(sampling_weight, votes, settings)
        made.append(Candidate(model_id, name, sampling_weight, votes, boosted, weight))
    return made


_ACTIVE_MODELS = (
    select(Model.id, Model.name, Model.sampling_weight)
    .where(Model.status == ModelStatus.active)
    .order_by(Model.id)
)


def read_candidates(connection: Connection, *, settings: Settings) -> list[Candidate]:
    """Active models with their weights; counted votes come from the latest rating snapshot,
    so a new model (absent from it) is boosted from its first battle."""
    models = connection.execute(_ACTIVE_MODELS).all()
    rated = read_latest_ratings(connection) if settings.new_model_vote_target > 0 else {}
    return candidates_from([(m.id, m.name, m.sampling_weight) for m in models], rated, settings)


async def active_candidates(session: AsyncSession, *, settings: Settings) -> list[Candidate]:
    return await session.run_sync(
        lambda sync: read_candidates(sync.connection(), settings=settings)
    )


def expected_shares(weights: Sequence[float]) -> list[float]:
    """Each model's expected share of the model slots in battles (the shares sum to 1).

    With W = sum w and pair weights w_i w_j, the chance that model i is in a battle is
    w_i (W - w_i) / Z where Z = (W^2 - sum w^2) / 2; each battle has two slots, hence the half.
    """
    total = sum(weights)
    z = (total * total - sum(w * w for w in weights)) / 2
    if z <= 0:
        return [0.0 for _ in weights]
    return [w * (total - w) / z / 2 for w in weights]
