"""ORM tables: owners, model endpoints, battles, messages, votes and rating snapshots."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite keeps no zone, so it is restored on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class ModelStatus(enum.StrEnum):
    pending = "pending"
    active = "active"
    paused = "paused"
    retired = "retired"


class BattleStatus(enum.StrEnum):
    pending = "pending"  # a turn is waiting to be streamed
    streaming = "streaming"
    ready = "ready"  # both sides answered; votable
    failed = "failed"  # a side failed; never votable
    voted = "voted"


class Winner(enum.StrEnum):
    model_a = "model_a"
    model_b = "model_b"
    tie = "tie"
    tie_bothbad = "tie (bothbad)"


class Side(enum.StrEnum):
    user = "user"
    a = "a"
    b = "b"


class BattleMode(enum.StrEnum):
    anonymous = "anonymous"  # the pair drawn, the names shown after the vote; rated
    named = "named"  # the visitor chose the models by name; its vote is stored, never rated


class ChatRole(enum.StrEnum):
    user = "user"
    assistant = "assistant"


class Feedback(enum.StrEnum):
    up = "up"
    down = "down"


def _enum(cls: type[enum.StrEnum], name: str) -> SAEnum:
    return SAEnum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Owner(Base):
    __tablename__ = "owner"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # Where status changes of the owner's models are posted, and the HMAC secret that signs
    # them (encrypted like endpoint keys: the arena must read it back to sign).
    webhook_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    webhook_secret: Mapped[str | None] = mapped_column(Text, default=None)

    models: Mapped[list[Model]] = relationship(back_populates="owner")


class WebhookDelivery(Base):
    """A status-change notice for an owner's webhook: queued with the change, then attempted
    until the receiver answers 2xx or the attempts run out."""

    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owner.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    given_up_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class OwnerInvite(Base):
    __tablename__ = "owner_invite"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class Model(Base):
    """A competitor: an OpenAI-compatible endpoint plus the public facts shown after a vote."""

    __tablename__ = "model"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owner.id"), default=None)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    organization: Mapped[str] = mapped_column(String(100), default="")
    license: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    base_url: Mapped[str] = mapped_column(String(2048))
    upstream_model: Mapped[str] = mapped_column(String(200))
    api_key_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    api_key_last4: Mapped[str | None] = mapped_column(String(4), default=None)
    max_tokens: Mapped[int] = mapped_column(Integer, default=1024)
    temperature: Mapped[float] = mapped_column(Float, default=0.7)
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[ModelStatus] = mapped_column(
        _enum(ModelStatus, "model_status"), default=ModelStatus.pending
    )
    status_reason: Mapped[str] = mapped_column(Text, default="")
    sampling_weight: Mapped[float] = mapped_column(Float, default=1.0)
    # Declared by its owner and checked by the probe with a tiny image: only such models meet
    # in battles whose prompt has images.
    supports_images: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(default=None)
    paused_at: Mapped[datetime | None] = mapped_column(default=None)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)

    owner: Mapped[Owner | None] = relationship(back_populates="models")

    __table_args__ = (
        CheckConstraint("sampling_weight >= 0", name="sampling_weight_not_negative"),
        CheckConstraint("max_tokens > 0", name="max_tokens_positive"),
    )


class ModelStatusEvent(Base):
    """Every status change with who made it and why: nothing is deprecated silently."""

    __tablename__ = "model_status_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id"), index=True)
    status: Mapped[ModelStatus] = mapped_column(_enum(ModelStatus, "event_status"))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OperatorAction(Base):
    """The audit log: every action an operator took, through the admin API or the CLI."""

    __tablename__ = "operator_action"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # "admin" (the admin API's token) or "cli:<system user>"
    actor: Mapped[str] = mapped_column(String(100))
    # What was done, e.g. model.pause, owner.revoke, invite.create
    action: Mapped[str] = mapped_column(String(40))
    # To what: a model's name, an owner's e-mail address, ...
    target: Mapped[str] = mapped_column(String(320), default="")
    reason: Mapped[str] = mapped_column(Text, default="")


class Battle(Base):
    __tablename__ = "battle"

    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    model_a_id: Mapped[int] = mapped_column(ForeignKey("model.id"), index=True)
    model_b_id: Mapped[int] = mapped_column(ForeignKey("model.id"), index=True)
    session_hash: Mapped[str] = mapped_column(String(64), index=True)
    ip_hash: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[BattleStatus] = mapped_column(
        _enum(BattleStatus, "battle_status"), default=BattleStatus.pending
    )
    turns: Mapped[int] = mapped_column(Integer, default=1)
    language: Mapped[str] = mapped_column(String(16), default="")
    category_tags: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    stream_started_at: Mapped[datetime | None] = mapped_column(default=None)
    # The worker (WorkerInstance.id) that claimed the latest turn for streaming: should it die,
    # the next worker to start settles the turn (arena/workers.py).
    streamed_by: Mapped[str | None] = mapped_column(String(32), default=None)
    ready_at: Mapped[datetime | None] = mapped_column(default=None)
    # Why a vote on this battle would not count, known before the vote (identity_leak,
    # duplicate_prompt), and the length of the latest answers, to tell a read from a blind click.
    flags: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    answer_chars: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The first prompt's estimated tokens (arena.ratings.categories.estimate_tokens), worked out
    # with the language and tags; None until then. The "exclude short prompts" view reads it.
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    # When the page that carried the release notice was served to this battle's session (signed
    # by the server, arena/consent.py); None: never shown, so its text is never released.
    notice_shown_at: Mapped[datetime | None] = mapped_column(default=None)
    # When its visitor (or the operator, on their request) erased its texts; the battle and its
    # vote stay, so the ratings do not move (arena/battles/erasure.py).
    erased_at: Mapped[datetime | None] = mapped_column(default=None)
    # Anonymous (drawn, rated) or named (chosen by the visitor, shown from the start, never rated)
    mode: Mapped[BattleMode] = mapped_column(
        _enum(BattleMode, "battle_mode"),
        default=BattleMode.anonymous,
        server_default=BattleMode.anonymous.value,
    )
    # How often the visitor asked both sides again for the latest turn before the vote; the
    # vote is on the answers shown last (arena/battles/turns.py, regenerate_turn).
    regenerations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Each side's style over its answers, as FastChat's conv_metadata holds it (answer tokens,
    # headers h1-h6, list items, bold spans; arena/ratings/style_features.py), for style control
    # and the export. Stored with the answers; None until then, or for a battle stored before
    # the column existed and not backfilled yet (arena/battles/style_backfill.py).
    conv_metadata: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), default=None
    )
    # The four numbers per side the style-controlled fit reads (each a sum of conv_metadata's
    # counts), as columns: reading them out of the JSON takes minutes at a million battles.
    style_a_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    style_a_headers: Mapped[int | None] = mapped_column(Integer, default=None)
    style_a_lists: Mapped[int | None] = mapped_column(Integer, default=None)
    style_a_bold: Mapped[int | None] = mapped_column(Integer, default=None)
    style_b_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    style_b_headers: Mapped[int | None] = mapped_column(Integer, default=None)
    style_b_lists: Mapped[int | None] = mapped_column(Integer, default=None)
    style_b_bold: Mapped[int | None] = mapped_column(Integer, default=None)

    model_a: Mapped[Model] = relationship(foreign_keys=[model_a_id])
    model_b: Mapped[Model] = relationship(foreign_keys=[model_b_id])
    messages: Mapped[list[Message]] = relationship(
        back_populates="battle", order_by="(Message.turn, Message.id)"
    )

    __table_args__ = (CheckConstraint("model_a_id <> model_b_id", name="two_models"),)


class Message(Base):
    """One turn of one side (or the visitor's prompt), with the side's timings for operators."""

    __tablename__ = "message"

    id: Mapped[int] = mapped_column(primary_key=True)
    battle_id: Mapped[str] = mapped_column(ForeignKey("battle.id", ondelete="CASCADE"))
    turn: Mapped[int] = mapped_column(Integer)
    side: Mapped[Side] = mapped_column(_enum(Side, "side"))
    content: Mapped[str] = mapped_column(Text, default="")
    finish_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    # Full upstream error for the operator; the visitor only ever sees a neutral message.
    error: Mapped[str | None] = mapped_column(Text, default=None)
    first_token_ms: Mapped[float | None] = mapped_column(Float, default=None)
    duration_ms: Mapped[float | None] = mapped_column(Float, default=None)
    output_chunks: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    battle: Mapped[Battle] = relationship(back_populates="messages")

    __table_args__ = (UniqueConstraint("battle_id", "turn", "side", name="one_per_side_and_turn"),)


class Image(Base):
    """An image attached to a prompt, re-encoded without metadata (arena/images/decoding.py) and
    stored once however many prompts carry it. In the database so that no worker keeps files."""

    __tablename__ = "image"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    mime_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptImage(Base):
    """Which images a visitor's prompt carries (the battle's turn), in the order attached."""

    __tablename__ = "prompt_image"

    battle_id: Mapped[str] = mapped_column(ForeignKey("battle.id", ondelete="CASCADE"))
    turn: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("image.sha256"), index=True)

    __table_args__ = (PrimaryKeyConstraint("battle_id", "turn", "position"),)


class Vote(Base):
    __tablename__ = "vote"

    id: Mapped[int] = mapped_column(primary_key=True)
    # unique: a second vote on one battle fails in the database, whatever races above it
    battle_id: Mapped[str] = mapped_column(ForeignKey("battle.id"), unique=True)
    winner: Mapped[Winner] = mapped_column(_enum(Winner, "winner"))
    session_hash: Mapped[str] = mapped_column(String(64), index=True)
    ip_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    seconds_to_vote: Mapped[float | None] = mapped_column(Float, default=None)
    counted: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    # Why a vote is not counted (identity_leak, duplicate_prompt, rate_limited, suspicious, ...)
    flags: Mapped[list[Any]] = mapped_column(default=list)

    battle: Mapped[Battle] = relationship()


class Chat(Base):
    """A direct chat: one model the visitor chose, several turns; not a battle, never rated."""

    __tablename__ = "chat"

    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id"), index=True)
    session_hash: Mapped[str] = mapped_column(String(64), index=True)
    ip_hash: Mapped[str] = mapped_column(String(64), default="")
    # The battle statuses but `voted`: pending, streaming, ready, failed
    status: Mapped[BattleStatus] = mapped_column(
        _enum(BattleStatus, "chat_status"), default=BattleStatus.pending
    )
    turns: Mapped[int] = mapped_column(Integer, default=1)
    # How often the latest answer of a turn was asked again; each counts as a turn (the limit)
    regenerations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    stream_started_at: Mapped[datetime | None] = mapped_column(default=None)
    streamed_by: Mapped[str | None] = mapped_column(String(32), default=None)


class ChatMessage(Base):
    """One prompt or one answer of a chat, with the answer's timings for its owner."""

    __tablename__ = "chat_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[str] = mapped_column(ForeignKey("chat.id", ondelete="CASCADE"))
    turn: Mapped[int] = mapped_column(Integer)
    role: Mapped[ChatRole] = mapped_column(_enum(ChatRole, "chat_role"))
    content: Mapped[str] = mapped_column(Text, default="")
    finish_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    # Full upstream error for the operator; the visitor only ever sees a neutral message.
    error: Mapped[str | None] = mapped_column(Text, default=None)
    first_token_ms: Mapped[float | None] = mapped_column(Float, default=None)
    duration_ms: Mapped[float | None] = mapped_column(Float, default=None)
    # An answer moderation withheld: kept for the operator, never shown or replayed again
    withheld: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("chat_id", "turn", "role", name="one_per_role_and_turn"),)


class ChatImage(Base):
    """Which images a visitor's prompt in a chat carries (the chat's turn), in the order
    attached; the images themselves are the battles' table `image`, stored once by hash."""

    __tablename__ = "chat_image"

    chat_id: Mapped[str] = mapped_column(ForeignKey("chat.id", ondelete="CASCADE"))
    turn: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("image.sha256"), index=True)

    __table_args__ = (PrimaryKeyConstraint("chat_id", "turn", "position"),)


class ChatFeedback(Base):
    """The visitor's thumbs up or down on one answer of a chat; the latest one stands."""

    __tablename__ = "chat_feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[str] = mapped_column(ForeignKey("chat.id", ondelete="CASCADE"))
    # The chat's model, kept here so that an owner's counts need no join
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id"), index=True)
    turn: Mapped[int] = mapped_column(Integer)
    rating: Mapped[Feedback] = mapped_column(_enum(Feedback, "feedback"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("chat_id", "turn", name="one_per_answer"),)


class Share(Base):
    """A voted battle its visitor published: readable by anyone holding the slug, with the
    names, prompts and answers, and nothing of the session (arena/battles/shares.py)."""

    __tablename__ = "share"

    id: Mapped[int] = mapped_column(primary_key=True)
    battle_id: Mapped[str] = mapped_column(ForeignKey("battle.id", ondelete="CASCADE"), unique=True)
    slug: Mapped[str] = mapped_column(String(43), unique=True)
    published_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptCount(Base):
    """How often a normalised prompt was seen, to flag repeated prompts."""

    __tablename__ = "prompt_count"

    prompt_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class FlaggedSession(Base):
    __tablename__ = "flagged_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The operator's review: "confirmed" (the votes stay excluded) or "dismissed" (they count
    # again and the scan leaves the session be), when, and why.
    decision: Mapped[str | None] = mapped_column(String(16), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decision_note: Mapped[str] = mapped_column(Text, default="")


class RatingSnapshot(Base):
    __tablename__ = "rating_snapshot"

    id: Mapped[int] = mapped_column(primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    method: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32))
    # The exclusions applied before rating (arena.ratings.views.view_key): "" for none.
    view: Mapped[str] = mapped_column(String(64), default="", server_default="")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    vote_set_hash: Mapped[str] = mapped_column(String(64))
    n_votes: Mapped[int] = mapped_column(Integer)
    rows: Mapped[list[Any]] = mapped_column(default=list)
    # Matrices and other tables for the plots, keyed by table name
    extras: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        Index("ix_rating_snapshot_lookup", "method", "category", "computed_at"),
        Index("ix_rating_snapshot_view_lookup", "method", "category", "view", "computed_at"),
    )


class JudgeEndpoint(Base):
    """The judge the operator set with `arena judge set` (one row at most; it takes precedence
    over the ARENA_JUDGE_* settings). Its key is encrypted like endpoint keys."""

    __tablename__ = "judge_endpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    base_url: Mapped[str] = mapped_column(String(2048))
    model: Mapped[str] = mapped_column(String(200))
    api_key_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    api_key_last4: Mapped[str | None] = mapped_column(String(4), default=None)
    # Whether `arena serve --demo` set it: the demo judge is replaced by any judge set later.
    demo: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


class JudgeLabel(Base):
    """The judge's labels of one voted battle's first prompt (arena/judge/), or, while
    `labelled_at` is empty or `stale`, the battle's place in the labelling queue.

    `judge_model` and `prompt_version` say who labelled it with which prompt, so that the tables
    can name them and a change of either can be relabelled (`arena judge relabel`)."""

    __tablename__ = "judge_label"

    battle_id: Mapped[str] = mapped_column(
        ForeignKey("battle.id", ondelete="CASCADE"), primary_key=True
    )
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the next attempt is due (moved ahead while a worker holds the battle: its claim).
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    given_up_at: Mapped[datetime | None] = mapped_column(default=None)
    # Asked to be labelled again (`arena judge relabel`); the labels below stay until then.
    stale: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    labelled_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    judge_model: Mapped[str | None] = mapped_column(String(200), default=None)
    prompt_version: Mapped[str | None] = mapped_column(String(32), default=None)
    # The Arena-Hard criteria the prompt meets (their names), and how many of the seven.
    criteria: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    hard_score: Mapped[int | None] = mapped_column(Integer, default=None)
    math: Mapped[bool | None] = mapped_column(Boolean, default=None)
    instruction_following: Mapped[bool | None] = mapped_column(Boolean, default=None)
    creative_writing: Mapped[bool | None] = mapped_column(Boolean, default=None)
    # Either answer declines the request (for a view that leaves such battles out).
    refusal: Mapped[bool | None] = mapped_column(Boolean, default=None)


class JobLock(Base):
    """A lease row so that one worker at a time runs a job where advisory locks do not exist."""

    __tablename__ = "job_lock"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column()


class WorkerInstance(Base):
    """A worker process while it runs: it holds a lock named by its id for its lifetime, so
    that a worker starting later can tell whether it is gone (arena/workers.py)."""

    __tablename__ = "worker_instance"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModerationRefusal(Base):
    """One refusal by moderation (arena/moderation.py), counted by reason for the operator: a
    prompt refused before any model saw it, or a turn's answers withheld (a battle's, or a
    direct chat's). No text is kept, and no battle or chat for a prompt: a refused first prompt
    never became one."""

    __tablename__ = "moderation_refusal"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # "prompt" or "answer"
    stage: Mapped[str] = mapped_column(String(16))
    # e.g. blocklist, flagged:hate, unavailable (moderation.REASONS lists them)
    reason: Mapped[str] = mapped_column(String(64))
    battle_id: Mapped[str | None] = mapped_column(String(43), default=None)
    chat_id: Mapped[str | None] = mapped_column(String(43), default=None)
