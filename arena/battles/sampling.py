"""Choosing which two models meet in a battle, and on which side each sits (DESIGN section 6).

In `weighted` mode a pair {i, j} is drawn with probability proportional to w_i * w_j, where w is
the operator's `sampling_weight` of the model, multiplied by `new_model_boost` while the model has
fewer counted votes than `new_model_vote_target` (FastChat's battle targets serve the same end: a
new model gets enough votes for a rating soon, then competes like the others).

In `active` mode those weighted pair shares are blended with each pair's expected reduction of
the leaderboard's uncertainty (arena/ratings/active_sampling.py), which the recompute job stores
with the latest overall Bradley-Terry snapshot; `sampling_floor` of the draws stays spread evenly
over every drawable pair. The plan depends on settled figures only (the snapshot, the active
models and their weights), never on battles that are still open.
"""

from __future__ import annotations

import bisect
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.ratings_view import CATEGORY, GAINS_KEY, METHOD, RatedModel, rated_models
from arena.config import Settings
from arena.errors import NoModelsAvailable
from arena.models import Model, ModelStatus, RatingSnapshot
from arena.ratings.active_sampling import (
    all_pairs,
    blend_shares,
    model_shares,
    weighted_pair_shares,
)
from arena.ratings.battles import FloatArray, IntArray

BoolArray = npt.NDArray[np.bool_]

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
_ACTIVE_IMAGE_MODELS = _ACTIVE_MODELS.where(Model.supports_images.is_(True))


@dataclass(frozen=True)
class SnapshotGains:
    """What the draw reads of the latest overall snapshot: the ratings (votes for the boost) and
    the gain of every pair of rated models (a symmetric matrix over `index`)."""

    rated: dict[str, RatedModel]
    index: dict[str, int] = field(default_factory=dict)
    gain: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    computed_at: datetime | None = None

    def pair_gains(
        self, names: Sequence[str], lo: IntArray, hi: IntArray
    ) -> tuple[FloatArray, BoolArray]:
        """(gain, rated) per pair of `names`; a pair with a model that has no gains is unrated."""
        at = np.array([self.index.get(name, -1) for name in names], dtype=np.int64)
        rated = (at[lo] >= 0) & (at[hi] >= 0)
        gain = np.zeros(lo.shape[0])
        gain[rated] = self.gain[at[lo[rated]], at[hi[rated]]]
        return gain, rated


def snapshot_gains(rows: Any, stored: Any, computed_at: datetime | None = None) -> SnapshotGains:
    """Parse a snapshot's rows and stored gains defensively: anything malformed means no gains."""
    rated = rated_models(rows) if isinstance(rows, list) else {}
    if not isinstance(stored, Mapping):
        return SnapshotGains(rated)
    models, gains = stored.get("models"), stored.get("gain")
    if not (isinstance(models, list) and isinstance(gains, list)):
        return SnapshotGains(rated)
    m = len(models)
    if len(gains) != m * (m - 1) // 2 or not all(isinstance(n, str) for n in models):
        return SnapshotGains(rated)
    try:
        values = np.asarray(gains, dtype=np.float64)
    except (TypeError, ValueError):
        return SnapshotGains(rated)
    values = np.where(np.isfinite(values) & (values > 0), values, 0.0)
    matrix = np.zeros((m, m))
    lo, hi = all_pairs(m)
    matrix[lo, hi] = values
    matrix[hi, lo] = values
    return SnapshotGains(rated, {name: i for i, name in enumerate(models)}, matrix, computed_at)


_LATEST_SNAPSHOT = (
    select(RatingSnapshot.id, RatingSnapshot.computed_at)
    .where(
        RatingSnapshot.method == METHOD,
        RatingSnapshot.category == CATEGORY,
        RatingSnapshot.view == "",  # the plain view: no exclusions
    )
    .order_by(RatingSnapshot.computed_at.desc(), RatingSnapshot.id.desc())
    .limit(1)
)


class _GainsCache:
    """The parsed gains of the latest snapshot, per database: a new snapshot comes every few
    minutes, a draw every few milliseconds. Keyed by the snapshot's id and time, so a snapshot
    replaced (or a database recreated) is read again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Any, SnapshotGains]] = {}

    def read(self, connection: Connection, *, with_gains: bool) -> SnapshotGains:
        latest = connection.execute(_LATEST_SNAPSHOT).first()
        if latest is None:
            return SnapshotGains({})
        url = connection.engine.url.render_as_string(hide_password=True)
        key = (latest.id, latest.computed_at, with_gains)
        with self._lock:
            entry = self._entries.get(url)
        if entry is not None and entry[0] == key:
            return entry[1]
        columns: list[Any] = [RatingSnapshot.rows]
        if with_gains:
            columns.append(RatingSnapshot.extras[GAINS_KEY])
        row = connection.execute(select(*columns).where(RatingSnapshot.id == latest.id)).first()
        if row is None:
            return SnapshotGains({})
        made = snapshot_gains(row[0], row[1] if with_gains else None, latest.computed_at)
        with self._lock:
            if len(self._entries) >= 8 and url not in self._entries:
                self._entries.clear()
            self._entries[url] = (key, made)
        return made


_gains_cache = _GainsCache()


@dataclass(frozen=True)
class SamplingPlan:
    """The active models and how each battle's pair is drawn among them.

    `pair_shares()` are the planned shares of every pair (lo, hi index `candidates`) that
    `draw()` uses and /api/sampling publishes; in weighted mode they are w_i w_j normalised and
    the draw needs only the weights.
    """

    mode: str
    floor: float | None
    candidates: list[Candidate]
    lo: IntArray
    hi: IntArray
    active_shares: FloatArray | None = None  # the blended pair shares, in active mode
    cumulative: list[float] = field(default_factory=list)
    gain: FloatArray | None = None
    rated: BoolArray | None = None
    gains_from: datetime | None = None

    def pair_gains(self) -> list[float | None]:
        """Each pair's gain in active mode where both models are rated, else None."""
        if self.gain is None or self.rated is None:
            return [None] * len(self.lo)
        return [float(g) if r else None for g, r in zip(self.gain, self.rated, strict=True)]

    def pair_shares(self) -> FloatArray:
        if self.active_shares is not None:
            return self.active_shares
        weights = np.array([c.weight for c in self.candidates], dtype=np.float64)
        return weighted_pair_shares(weights, self.lo, self.hi)

    def model_shares(self) -> list[float]:
        shares = model_shares(self.pair_shares(), self.lo, self.hi, len(self.candidates))
        return [float(s) for s in shares]

    def draw(self, rng: random.Random = _rng) -> tuple[int, int]:
        """(side A, side B) model ids: a pair by the planned shares, then sides at random."""
        ids = [c.model_id for c in self.candidates]
        if self.active_shares is None or not self.cumulative:
            return draw_pair(ids, rng, [c.weight for c in self.candidates])
        total = self.cumulative[-1]
        if total <= 0:
            raise NoModelsAvailable()
        k = min(bisect.bisect_right(self.cumulative, rng.random() * total), len(self.lo) - 1)
        first, second = ids[int(self.lo[k])], ids[int(self.hi[k])]
        return (first, second) if rng.random() < 0.5 else (second, first)


def plan_from(
    candidates: list[Candidate], gains: SnapshotGains, settings: Settings
) -> SamplingPlan:
    lo, hi = all_pairs(len(candidates))
    if settings.sampling_mode != "active":
        return SamplingPlan("weighted", None, candidates, lo, hi)
    weights = np.array([c.weight for c in candidates], dtype=np.float64)
    gain, rated = gains.pair_gains([c.name for c in candidates], lo, hi)
    shares = blend_shares(
        weighted_pair_shares(weights, lo, hi), gain, rated, floor=settings.sampling_floor
    )
    return SamplingPlan(
        "active",
        settings.sampling_floor,
        candidates,
        lo,
        hi,
        shares,
        np.cumsum(shares).tolist(),
        gain,
        rated,
        gains.computed_at if gains.index else None,
    )


_plans: dict[tuple[int, tuple[Candidate, ...], float], tuple[SnapshotGains, SamplingPlan]] = {}


def read_plan(
    connection: Connection, *, settings: Settings, images_only: bool = False
) -> SamplingPlan:
    """The plan as it stands: active models with their weights, counted votes and pair gains from
    the latest rating snapshot, so a new model (absent from it) is boosted from its first battle.
    `images_only`: among the models that read images (a prompt with images attached)."""
    models = connection.execute(_ACTIVE_IMAGE_MODELS if images_only else _ACTIVE_MODELS).all()
    active = settings.sampling_mode == "active"
    gains = (
        _gains_cache.read(connection, with_gains=active)
        if active or settings.new_model_vote_target > 0
        else SnapshotGains({})
    )
    rated = gains.rated if settings.new_model_vote_target > 0 else {}
    candidates = candidates_from(
        [(m.id, m.name, m.sampling_weight) for m in models], rated, settings
    )
    if not active:
        return plan_from(candidates, gains, settings)
    # The same snapshot and the same models give the same plan: made once, not on every draw.
    key = (id(gains), tuple(candidates), settings.sampling_floor)
    cached = _plans.get(key)
    if cached is not None and cached[0] is gains:
        return cached[1]
    plan = plan_from(candidates, gains, settings)
    if len(_plans) >= 16:
        _plans.clear()
    _plans[key] = (gains, plan)
    return plan


def read_candidates(connection: Connection, *, settings: Settings) -> list[Candidate]:
    """Active models with their weights and boost (read_plan's candidates)."""
    return read_plan(connection, settings=settings).candidates


async def current_plan(session: AsyncSession, *, settings: Settings) -> SamplingPlan:
    return await session.run_sync(lambda sync: read_plan(sync.connection(), settings=settings))


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
