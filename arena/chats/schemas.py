"""What the direct chat API takes and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from arena.api_input import InputSchema
from arena.battles.schemas import AttachedImages, PromptIn
from arena.models import BattleStatus, Feedback
from arena.registry.schemas import ModelName


class ChatIn(PromptIn):
    """A new chat with the model named `model` (an active one), starting with `prompt`."""

    model: ModelName
    # Up to ARENA_MAX_IMAGES_PER_PROMPT images; the model must read images.
    images: AttachedImages = Field(default_factory=list)


class ChatTurnIn(PromptIn):
    """A follow-up prompt of a chat, with images if the chat's model reads them."""

    images: AttachedImages = Field(default_factory=list)


class ChatCreated(BaseModel):
    chat_id: str


class ChatRegenerated(BaseModel):
    chat_id: str
    # How often this chat's latest answer was asked again so far, this time included
    regenerations: int


class FeedbackIn(InputSchema):
    turn: int = Field(ge=1, le=100, description="the answer's turn, 1 for the first")
    rating: Feedback


class FeedbackOut(BaseModel):
    chat_id: str
    turn: int
    rating: Feedback


class ChatMessageOut(BaseModel):
    turn: int
    role: Literal["user", "assistant"]
    content: str
    finish_reason: str | None = None
    error: str | None = None
    feedback: Feedback | None = None
    # How many images the visitor attached to this prompt (0 for an answer); the images
    # themselves never leave the server.
    image_count: int = 0
    # An answer moderation withheld: `content` is empty and `error` says so
    withheld: bool = False


class ChatModelOut(BaseModel):
    name: str
    organization: str
    # Whether the model reads images: a follow-up may carry some
    supports_images: bool


class ChatOut(BaseModel):
    chat_id: str
    model: ChatModelOut
    # pending (a turn waits to be streamed), streaming, ready, failed (the latest answer failed)
    status: BattleStatus
    turns: int
    # Answers asked again (each counts as a turn against ARENA_MAX_TURNS)
    regenerations: int
    created_at: datetime
    messages: list[ChatMessageOut]
