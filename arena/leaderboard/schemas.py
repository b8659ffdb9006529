"""What the leaderboard's JSON downloads look like."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from arena.models import ModelStatus


class _FromAttributes(BaseModel):
    """Read from the service's dataclasses by attribute name; their extra fields are left out."""

    model_config = ConfigDict(from_attributes=True)


class SnapshotOut(_FromAttributes):
    id: int
    computed_at: datetime
    method: str = Field(
        description="bt (sandwich intervals), bt-bootstrap, bt-style (style-controlled, sandwich"
        " intervals), bt-style-bootstrap or elo"
    )
    category: str
    view: str = Field(
        default="",
        description="the exclusions applied before rating, joined by '+' (ties, short,"
        " refusals); empty for none",
    )
    params: dict[str, Any] = Field(description="every setting that shaped the numbers")
    vote_set_hash: str = Field(description="SHA-256 identifying exactly which votes went in")
    n_votes: int


class LeaderboardRowOut(_FromAttributes):
    model: str
    rating: float
    ci_lower: float | None
    ci_upper: float | None
    rank: int = Field(description="rank upper bound: 1 + models whose interval is wholly above")
    votes: int
    win_rate: float | None
    swap_votes: int | None = Field(
        default=None,
        description="the fewest votes found whose removal puts the next model above this one"
        " (refitted; null for the last row, for online Elo, or when no removal that keeps"
        " every model rated does); the removals are in `fragility`",
    )
    organization: str
    license: str
    status: str
    activated_at: datetime | None
    paused_at: datetime | None
    retired_at: datetime | None
    rank_change: int | None = Field(
        default=None,
        description="with `compare`: the model's rank in the compared method's table minus its"
        " rank here (positive: ranked higher here); null without `compare` or when the"
        " compared table does not rate the model",
    )


class UnratedOut(BaseModel):
    model: str
    votes: int
    reason: str


class RemovalOut(BaseModel):
    models: list[str] = Field(description="the two models of these votes")
    winner: str | None = Field(description="the model that won them; null for ties (either kind)")
    count: int


class SwapOut(BaseModel):
    above: str
    below: str
    votes: int | None = Field(
        description="removing these many votes (`removals`) and refitting puts `below` above"
        " `above`; one fewer along the same order does not. Null: no removal that keeps every"
        " model rated does"
    )
    first_order_votes: int | None = Field(
        description="the first-order (AMIP) estimate the refits started from"
    )
    removals: list[RemovalOut]


class FragilityOut(BaseModel):
    """How many votes hold the order: Broderick et al.'s approximate maximum influence
    perturbation on the Bradley-Terry fit, checked and adjusted by refitting."""

    method: str = Field(description="amip-refit")
    first_place: SwapOut | None = Field(
        description="the challenger that needs the fewest removals to overtake the leader"
    )
    adjacent: list[SwapOut] = Field(description="each model against the next one, top first")


class StyleCoefficientOut(BaseModel):
    """One style element's effect in a style-controlled table, with its 95% interval three ways."""

    element: str = Field(description="tokens, headers, lists or bold")
    coefficient: float = Field(
        description="change in the log-odds of winning per standard deviation of the element's"
        " normalised difference (a - b) / (a + b + 1) between the two answers"
    )
    ci_lower: float | None
    ci_upper: float | None
    rating_points: float = Field(
        description="the same effect as a rating gap: coefficient * 400 / ln 10"
    )
    rating_points_lower: float | None
    rating_points_upper: float | None
    odds_ratio: float = Field(
        description="exp(coefficient): how much one standard deviation more of the element"
        " multiplies the odds of winning"
    )
    odds_ratio_lower: float | None
    odds_ratio_upper: float | None
    feature_mean: float = Field(description="mean of the normalised difference over the battles")
    feature_sd: float = Field(description="its standard deviation (the unit of `coefficient`)")


class LeaderboardOut(BaseModel):
    """The same shape as `arena ratings compute --format json`, plus the snapshot it came from."""

    method: str
    category: str
    exclude: list[str] = Field(
        default_factory=list, description="the exclusions applied before rating"
    )
    show_retired: bool = Field(
        default=False, description="whether retired models are listed (with their dates)"
    )
    compare: str | None = Field(
        default=None, description="the method the rank_change column is measured against"
    )
    compared_snapshot: SnapshotOut | None = Field(
        default=None, description="the snapshot of the compared table"
    )
    exclusions: list[str] = Field(
        default_factory=list, description="the exclusions stored tables apply, to choose from"
    )
    dedup: bool = Field(
        default=True,
        description="true: the counted votes only; false: the votes held back for a prompt used"
        " more often than the duplicate limit are rated too (FastChat's dedup_tag sampled: false)",
    )
    dedup_off_stored: bool = Field(
        default=False,
        description="whether tables without deduplication are stored (none until a vote is held"
        " back as a duplicate prompt: until then they would be the same tables)",
    )
    params: dict[str, Any]
    vote_set_hash: str | None
    n_battles: int
    models: list[LeaderboardRowOut]
    unrated: list[UnratedOut]
    snapshot: SnapshotOut | None
    votes_total: int = Field(description="counted votes in the arena, all categories")
    methods: list[str]
    categories: list[str]
    fragility: FragilityOut | None = Field(
        default=None, description="Bradley-Terry tables only; null for online Elo"
    )
    style_coefficients: list[StyleCoefficientOut] | None = Field(
        default=None,
        description="bt-style only: what answer length and Markdown do to the odds of winning;"
        " the ratings are net of them",
    )
    battles_without_style: int | None = Field(
        default=None,
        description="bt-style only: counted votes left out because their battle has no style"
        " features (erased before they were worked out)",
    )


class MatricesOut(BaseModel):
    """The plot tables of one snapshot; rows and columns follow `models` (leaderboard order)."""

    method: str
    category: str
    snapshot: SnapshotOut | None
    models: list[str]
    win_fraction: list[list[float | None]]
    battle_count: list[list[float | None]]
    predicted_win: list[list[float | None]]
    # Settled battles (voted, failed, or past their vote window) each model was drawn into when
    # the snapshot was taken, and its share of their seats
    battles_drawn: dict[str, int]
    sampling_share: dict[str, float]


class OpponentOut(_FromAttributes):
    model: str
    battles: int
    win_fraction: float | None
    predicted: float | None


class StatusChangeOut(_FromAttributes):
    status: str
    reason: str
    at: datetime


class HistoryPointOut(_FromAttributes):
    at: datetime
    rating: float
    ci_lower: float | None
    ci_upper: float | None
    rank: int
    votes: int


class ModelFacts(BaseModel):
    """What a model's page says of it whatever the ratings: who, what and since when."""

    model_config = ConfigDict(frozen=True)

    name: str
    organization: str
    license: str
    description: str
    status: str
    created_at: datetime
    activated_at: datetime | None
    paused_at: datetime | None
    retired_at: datetime | None

    @property
    def status_since(self) -> datetime | None:
        """When the model entered its current status."""
        if self.status == ModelStatus.retired:
            return self.retired_at
        if self.status == ModelStatus.paused:
            return self.paused_at
        if self.status == ModelStatus.active:
            return self.activated_at
        return self.created_at


class ModelOut(ModelFacts):
    method: str
    current: LeaderboardRowOut | None
    unrated_reason: str | None
    # As in MatricesOut: settled battles only
    battles_drawn: int
    sampling_share: float | None
    vote_share: float | None
    # Votes of side-by-side battles (the visitor chose the models by name): never rated
    named_votes: int = 0
    history: list[HistoryPointOut]
    opponents: list[OpponentOut]
    status_history: list[StatusChangeOut]
    snapshot: SnapshotOut | None
