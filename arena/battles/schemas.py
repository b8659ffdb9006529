"""What the battle API takes and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from arena.api_input import InputSchema
from arena.models import BattleStatus, Winner

# A hard ceiling for the parser; the configurable limit (ARENA_MAX_PROMPT_CHARS) is checked after.
_PROMPT_CEILING = 200_000


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
    status: BattleStatus
    turns: int
    created_at: datetime
    messages: list[MessageOut]
    winner: Winner | None = None
    # Present only once the battle has been voted on
    models: Reveal | None = None
    # Past its vote window (ARENA_VOTE_WINDOW_SECONDS): it takes no vote or follow-up any more
    closed: bool = False
    # When its visitor deleted it: its texts are erased, it takes no vote or follow-up
    erased_at: datetime | None = None


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


class BattleErasedOut(BaseModel):
    battle_id: str
    erased_at: datetime
