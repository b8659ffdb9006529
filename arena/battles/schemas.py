"""What the battle API takes and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from arena.api_input import InputSchema
from arena.models import BattleMode, BattleStatus, Winner
from arena.registry.schemas import ModelName

# A hard ceiling for the parser; the configurable limit (ARENA_MAX_PROMPT_CHARS) is checked after.
_PROMPT_CEILING = 200_000
# Ceilings for the parser too: the largest ARENA_MAX_IMAGE_BYTES (50 MB) in base64 with its
# data URL head, and the largest ARENA_MAX_IMAGES_PER_PROMPT; the settings are checked after.
_IMAGE_URL_CEILING = 4 * (50_000_000 // 3 + 1) + 100
_IMAGES_CEILING = 16

ImageDataUrl = Annotated[
    str,
    Field(
        max_length=_IMAGE_URL_CEILING,
        description="An image as a data URL: data:image/png;base64,... (PNG, JPEG, WebP, GIF)",
    ),
]
# The images attached to a prompt, in order; each is decoded and re-encoded before use.
AttachedImages = Annotated[list[ImageDataUrl], Field(max_length=_IMAGES_CEILING)]


class PromptIn(InputSchema):
    prompt: str = Field(min_length=1, max_length=_PROMPT_CEILING)

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty; type a question or a task for the two models")
        if "\x00" in value:
            raise ValueError("the prompt contains a NUL character")
        return value


class BattleIn(PromptIn):
    """A new battle: anonymous (the pair drawn, the default) or named (one or two models chosen
    by name; with one, the other is drawn)."""

    mode: BattleMode = BattleMode.anonymous
    models: list[ModelName] | None = Field(default=None, max_length=2)
    # Up to ARENA_MAX_IMAGES_PER_PROMPT images attached to the first prompt, in either mode.
    images: AttachedImages = Field(default_factory=list)

    @model_validator(mode="after")
    def _models_fit_the_mode(self) -> BattleIn:
        if self.mode == BattleMode.anonymous:
            if self.models is not None:
                raise ValueError(
                    "models: an anonymous battle draws its two models and takes no names; send "
                    '"mode": "named" to choose them, or leave "models" out'
                )
            return self
        if not self.models:
            raise ValueError(
                "models: a named battle needs one or two model names (with one, the other is drawn)"
            )
        if len(self.models) == 2 and self.models[0] == self.models[1]:
            raise ValueError(
                f"models: {self.models[0]!r} is named twice; choose two different models, or "
                "name one and let the other be drawn"
            )
        return self


class BattleCreated(BaseModel):
    battle_id: str


class VoteIn(InputSchema):
    winner: Winner


class RevealedModel(BaseModel):
    name: str
    organization: str


class Reveal(BaseModel):
    model_a: RevealedModel
    model_b: RevealedModel


class MessageOut(BaseModel):
    turn: int
    side: Literal["user", "a", "b"]
    content: str
    finish_reason: str | None = None
    error: str | None = None


class BattleOut(BaseModel):
    battle_id: str
    mode: BattleMode = BattleMode.anonymous
    status: BattleStatus
    turns: int
    created_at: datetime
    messages: list[MessageOut]
    winner: Winner | None = None
    # Present once the battle has been voted on; from the start for a named battle
    models: Reveal | None = None
    # Past its vote window (ARENA_VOTE_WINDOW_SECONDS): it takes no vote or follow-up any more
    closed: bool = False
    # When its visitor deleted it: its texts are erased, it takes no vote or follow-up
    erased_at: datetime | None = None
    # How often its latest turn was asked again before the vote
    regenerations: int = 0
    # Where the battle is published, when its visitor shared it (after the vote)
    share_path: str | None = None


class MyBattle(BaseModel):
    """One battle of the visitor's list: the names only once it is voted on."""

    battle_id: str
    created_at: datetime
    # The start of the first prompt; empty once erased
    prompt: str
    status: BattleStatus
    closed: bool
    winner: Winner | None = None
    models: Reveal | None = None
    erased_at: datetime | None = None


class MyBattles(BaseModel):
    battles: list[MyBattle]
    # How many of the session's votes count; the personal leaderboard needs 20 of them
    counted_votes: int = 0


class BattleErasedOut(BaseModel):
    battle_id: str
    erased_at: datetime


class Regenerated(BaseModel):
    battle_id: str
    # How often this battle's latest turn was asked again so far, this time included
    regenerations: int


class ShareOut(BaseModel):
    # Where anyone can read the battle: names, prompts and answers
    url: str


class SharedMessage(BaseModel):
    turn: int
    side: Literal["user", "a", "b"]
    content: str


class SharedBattle(BaseModel):
    """A published battle: what its visitor chose to show, and nothing of their session."""

    published_at: datetime
    created_at: datetime
    winner: Winner
    models: Reveal
    regenerations: int
    messages: list[SharedMessage]


class PersonalRow(BaseModel):
    model: str
    # Fitted on this visitor's counted votes only (Bradley-Terry with one virtual tie per pair)
    rating: float
    votes: int
    wins: int
    losses: int
    ties: int
    # The public leaderboard's rating of the model, when it has one
    public_rating: float | None = None


class PersonalLeaderboard(BaseModel):
    counted_votes: int
    method: str
    models: list[PersonalRow]


class PersonalLeaderboardNotYet(BaseModel):
    """The 409 of the personal leaderboard: too few counted votes yet."""

    detail: str
    counted_votes: int
    votes_needed: int
