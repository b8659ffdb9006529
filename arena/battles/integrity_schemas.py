"""What the sampling, vote-count and admin flag routes answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from arena.models import ModelStatus


class _FromData(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ModelSamplingOut(_FromData):
    """One model's draws among the settled battles of each window; shares are of all their model
    slots (two per battle), so they sum to 1 over the models, and a model in every battle has
    share 0.5. `expected_share` is None unless the model is active."""

    name: str
    organization: str
    # Reads images in prompts: the direct chat offers to attach some only then
    supports_images: bool
    status: ModelStatus
    sampling_weight: float
    boosted: bool
    expected_share: float | None
    battles_7d: int
    share_7d: float | None
    battles_30d: int
    share_30d: float | None
    activated_at: datetime | None
    paused_at: datetime | None
    retired_at: datetime | None


class PairSamplingOut(_FromData):
    """One pair of active models and its planned share of the next battles (the shares of all
    pairs sum to 1); `gain` is the share of the leaderboard's uncertainty one more vote on the
    pair is expected to remove, None in weighted mode or when a model of the pair is unrated."""

    model_a: str
    model_b: str
    planned_share: float
    gain: float | None


class SamplingOut(_FromData):
    """`mode` is the sampler's (`weighted` or `active`); in active mode `floor` is the fraction of
    the draws spread evenly over the pairs, so no pair's planned share is below
    floor / len(pairs), and `gains_from` the time of the rating snapshot whose pair gains the plan
    uses (None before the first). Each model's `expected_share` is half the sum of its pairs'
    planned shares: the plan the draws use, in both modes."""

    computed_at: datetime  # the windows end here, and the battles counted were settled by then
    battles_7d: int
    battles_30d: int
    new_model_vote_target: int
    new_model_boost: float
    mode: str
    floor: float | None
    gains_from: datetime | None
    models: list[ModelSamplingOut]
    pairs: list[PairSamplingOut]


class VoteCountsOut(_FromData):
    total: int
    counted: int
    excluded: int
    by_reason: dict[str, int]
    # What each reason means, for the people reading the numbers
    reasons: dict[str, str]


class FlaggedSessionOut(_FromData):
    session_hash: str
    reason: str
    detail: str
    created_at: datetime
    votes: int
    # The operator's review, once made: confirmed or dismissed
    decision: str | None = None
    decided_at: datetime | None = None
    decision_note: str = ""


class ExcludedVoteOut(_FromData):
    vote_id: int
    battle_id: str
    created_at: datetime
    winner: str
    flags: list[str]
    session_hash: str
    seconds_to_vote: float | None
    model_a: str
    model_b: str


class FlagsOut(BaseModel):
    counts: VoteCountsOut
    sessions: list[FlaggedSessionOut]
    votes: list[ExcludedVoteOut]
    next_before_id: int | None


class ScanOut(_FromData):
    sessions_tested: int
    sessions_flagged: int
    votes_excluded: int
