"""A direct chat's life, as plain functions over a sync `Connection` run in the reader and writer
threads (`db.Transactions`; each write must be safe to run twice): started with one active model,
a turn claimed for streaming and planned, its answer stored, follow-ups, the latest answer asked
again (regenerated), the visitor's thumbs.
A prompt may carry images (arena/images/) when the chat's model reads them; they are sent upstream
with every later turn, and never leave the server otherwise.

A chat is not a battle: the visitor chose the model, so nothing is hidden and nothing is rated.
It shares the battle's limits (prompt length, turns, rate limits), its relay, its moderation (an
answer moderation flags is withheld) and its circuit breaker (each answer counts).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from arena.battles.creation import chosen_models
from arena.battles.turns import TurnEnd, check_prompt, count_answer
from arena.chats.schemas import ChatMessageOut, ChatModelOut, ChatOut
from arena.config import Settings
from arena.errors import BattleNotReady, ChatNotFound, Conflict, InvalidInput, NotYourChat
from arena.images.content import user_content
from arena.images.decoding import CleanImage
from arena.images.store import chat_image_counts, read_chat_images, store_chat_images
from arena.models import (
    BattleStatus,
    Chat,
    ChatFeedback,
    ChatMessage,
    ChatRole,
    Feedback,
    Model,
    ModelStatus,
    utcnow,
)
from arena.moderation import record_refusal
from arena.registry.keys import KeyRing
from arena.upstream.client import Answer, Endpoint
from arena.upstream.client import ChatMessage as UpstreamMessage
from arena.visitors import Visitor

# One text for every failure: the upstream error is kept for the operator, never shown.
CHAT_ERROR = "This answer could not be completed. Start a new chat, or try another model."
# What the visitor reads in place of an answer moderation withheld; which rule matched is not said.
CHAT_WITHHELD = (
    "This answer was withheld by the arena's moderation, so this chat cannot go on. "
    "Please start a new chat."
)
INTERRUPTED = "interrupted: the arena worker relaying this chat stopped before the answer ended"


@dataclass(frozen=True)
class ChatPlan:
    """What one turn of a chat sends upstream."""

    chat_id: str
    turn: int
    model_id: int
    endpoint: Endpoint
    conversation: list[UpstreamMessage]


def _owned(session_hash: str, visitor: Visitor) -> None:
    if not secrets.compare_digest(session_hash, visitor.session_hash):
        raise NotYourChat()


def choose_model(
    connection: Connection, *, name: str, prompt: str, settings: Settings, with_images: bool
) -> int:
    """The id of the active model named `name` (one that reads images, for a prompt
    `with_images`), once the prompt is checked; reads only."""
    check_prompt(prompt, settings)
    (model_id,) = chosen_models(connection, [name], with_images=with_images, field="model")
    return model_id


def create_chat(
    connection: Connection,
    *,
    model_id: int,
    prompt: str,
    visitor: Visitor,
    images: Sequence[CleanImage] = (),
) -> str:
    """Store the chat and its first prompt with its `images` (already checked and re-encoded),
    waiting to be streamed; the chat's id."""
    chat_id = secrets.token_urlsafe(16)
    connection.execute(
        insert(Chat).values(
            id=chat_id,
            model_id=model_id,
            session_hash=visitor.session_hash,
            ip_hash=visitor.ip_hash,
            status=BattleStatus.pending,
            turns=1,
            created_at=utcnow(),
        )
    )
    connection.execute(
        insert(ChatMessage).values(
            chat_id=chat_id, turn=1, role=ChatRole.user, content=prompt, created_at=utcnow()
        )
    )
    store_chat_images(connection, chat_id=chat_id, turn=1, images=images)
    return chat_id


_FOLLOWED_UP = (
    select(
        Chat.session_hash,
        Chat.status,
        Chat.turns,
        Chat.regenerations,
        Model.status,
        Model.name,
        Model.supports_images,
    )
    .join(Model, Model.id == Chat.model_id)
    .where(Chat.id == bindparam("chat_id"))
)
_LATEST_WITHHELD = select(ChatMessage.withheld).where(
    ChatMessage.chat_id == bindparam("chat_id"),
    ChatMessage.turn == bindparam("turn"),
    ChatMessage.role == ChatRole.assistant,
)


@dataclass(frozen=True)
class OpenChat:
    """A chat that takes another turn now, as it was read."""

    turns: int
    regenerations: int
    model_name: str
    reads_images: bool


def _open_for_another_turn(
    connection: Connection, chat_id: str, visitor: Visitor, settings: Settings, *, asking: str
) -> OpenChat:
    """The chat as read, or raise why it takes no new turn now (a follow-up or a regeneration,
    as `asking` says). Regenerations count as turns against the limit: each one costs the model
    a call, as a follow-up does."""
    found = connection.execute(_FOLLOWED_UP, {"chat_id": chat_id}).one_or_none()
    if found is None:
        raise ChatNotFound()
    session_hash, status, turns, regenerations, model_status, model_name, reads_images = found
    _owned(session_hash, visitor)
    if status == BattleStatus.failed:
        withheld = connection.execute(
            _LATEST_WITHHELD, {"chat_id": chat_id, "turn": turns}
        ).scalar_one_or_none()
        if withheld:
            raise Conflict(
                "The latest answer of this chat was withheld by the arena's moderation; start a "
                "new chat."
            )
        raise Conflict("The latest answer of this chat failed; start a new chat.")
    if status != BattleStatus.ready:
        raise BattleNotReady(f"Wait for the answer to finish, then {asking}.")
    if model_status != ModelStatus.active:
        raise Conflict(
            f"{model_name!r} is {model_status.value} now and takes no more prompts; start a new "
            "chat with an active model."
        )
    if turns + regenerations >= settings.max_turns:
        raise Conflict(
            f"This chat reached its limit of {settings.max_turns} turns (regenerations count as "
            "turns); start a new chat."
        )
    return OpenChat(turns, regenerations, model_name, reads_images)


def add_turn(
    connection: Connection,
    *,
    chat_id: str,
    prompt: str,
    visitor: Visitor,
    settings: Settings,
    images: Sequence[CleanImage] = (),
) -> int:
    """Store the visitor's follow-up, with its `images` (already checked and re-encoded), as the
    chat's next turn; its number, or raise why the chat takes none now."""
    check_prompt(prompt, settings)
    chat = _open_for_another_turn(
        connection, chat_id, visitor, settings, asking="send your follow-up"
    )
    if images and not chat.reads_images:
        raise InvalidInput(
            f"images: {chat.model_name!r} does not read images; send the follow-up without "
            "images, or start a new chat with a model that does"
        )
    turn = chat.turns + 1
    asked = connection.execute(
        update(Chat)
        .where(Chat.id == chat_id, Chat.status == BattleStatus.ready, Chat.turns == chat.turns)
        .values(status=BattleStatus.pending, turns=turn)
    )
    if asked.rowcount != 1:
        raise BattleNotReady("Another request changed this chat just now; reload it.")
    connection.execute(
        insert(ChatMessage).values(
            chat_id=chat_id, turn=turn, role=ChatRole.user, content=prompt, created_at=utcnow()
        )
    )
    store_chat_images(connection, chat_id=chat_id, turn=turn, images=images)
    return turn


# The status, turn and count guards as read: one winner among racing requests.
_ASK_AGAIN = (
    update(Chat)
    .where(
        Chat.id == bindparam("regenerated_id"),
        Chat.status == BattleStatus.ready,
        Chat.turns == bindparam("turns_before"),
        Chat.regenerations == bindparam("regenerations_before"),
    )
    .values(status=BattleStatus.pending, regenerations=bindparam("regenerations_after"))
)
_FORGET_ANSWER = delete(ChatMessage).where(
    ChatMessage.chat_id == bindparam("regenerated_id"),
    ChatMessage.turn == bindparam("regenerated_turn"),
    ChatMessage.role == ChatRole.assistant,
)
# The thumbs rated the answer dropped, not the one to come.
_FORGET_THUMBS = delete(ChatFeedback).where(
    ChatFeedback.chat_id == bindparam("regenerated_id"),
    ChatFeedback.turn == bindparam("regenerated_turn"),
)


def regenerate_turn(
    connection: Connection, *, chat_id: str, visitor: Visitor, settings: Settings
) -> int:
    """Ask the model again for the latest turn: its answer and that answer's thumbs are
    dropped, and the turn waits to be streamed anew with the same conversation. The chat's
    count of regenerations, this one included."""
    chat = _open_for_another_turn(
        connection, chat_id, visitor, settings, asking="ask for a new answer"
    )
    regenerated = {"regenerated_id": chat_id, "regenerated_turn": chat.turns}
    asked = connection.execute(
        _ASK_AGAIN,
        {
            "regenerated_id": chat_id,
            "turns_before": chat.turns,
            "regenerations_before": chat.regenerations,
            "regenerations_after": chat.regenerations + 1,
        },
    )
    if asked.rowcount != 1:
        raise BattleNotReady("Another request changed this chat just now; reload it.")
    connection.execute(_FORGET_ANSWER, regenerated)
    connection.execute(_FORGET_THUMBS, regenerated)
    return chat.regenerations + 1


@dataclass(frozen=True)
class ClaimedChatTurn:
    chat_id: str
    turn: int
    endpoint: Any  # a row of _ENDPOINT
    messages: list[tuple[int, ChatRole, str]]  # turn, role, content
    # The images of the prompts that carry some, by turn
    images: Mapping[int, Sequence[CleanImage]] = field(default_factory=dict)


_CLAIM = (
    update(Chat)
    .where(
        Chat.id == bindparam("claimed_id"),
        Chat.session_hash == bindparam("claimed_by"),
        Chat.status == BattleStatus.pending,
    )
    .values(
        status=BattleStatus.streaming,
        stream_started_at=bindparam("started_at"),
        streamed_by=bindparam("claimed_for"),
    )
    .returning(Chat.model_id, Chat.turns)
)
_ENDPOINT = select(
    Model.id,
    Model.base_url,
    Model.upstream_model,
    Model.api_key_encrypted,
    Model.max_tokens,
    Model.temperature,
    Model.system_prompt,
).where(Model.id == bindparam("model_id"))
_CONVERSATION = (
    select(ChatMessage.turn, ChatMessage.role, ChatMessage.content)
    .where(ChatMessage.chat_id == bindparam("chat_id"))
    .order_by(ChatMessage.turn, ChatMessage.id)
)


def claim_turn(
    connection: Connection, *, chat_id: str, visitor: Visitor, worker: str
) -> ClaimedChatTurn | None:
    """Take the visitor's waiting turn for streaming by `worker` and read what the upstream call
    needs; None when there is no such turn (a reload, a second tab, someone else's chat)."""
    claimed = connection.execute(
        _CLAIM,
        {
            "claimed_id": chat_id,
            "claimed_by": visitor.session_hash,
            "started_at": utcnow(),
            "claimed_for": worker,
        },
    ).one_or_none()
    if claimed is None:
        return None
    model_id, turn = claimed
    endpoint = connection.execute(_ENDPOINT, {"model_id": model_id}).one()
    messages = [
        (message_turn, role, content)
        for message_turn, role, content in connection.execute(_CONVERSATION, {"chat_id": chat_id})
    ]
    images = read_chat_images(connection, chat_id=chat_id)
    return ClaimedChatTurn(chat_id, turn, endpoint, messages, images)


def plan_turn(claimed: ClaimedChatTurn, *, keys: KeyRing) -> ChatPlan:
    """The upstream call of a claimed turn; outside the claim's transaction (key decryption)."""
    model_id, base_url, upstream_model, api_key, max_tokens, temperature, system_prompt = (
        claimed.endpoint
    )
    endpoint = Endpoint(
        base_url=base_url,
        model=upstream_model,
        api_key=keys.decrypt(api_key) if api_key else None,
        max_tokens=max_tokens,
        temperature=temperature,
        system_prompt=system_prompt,
    )
    conversation: list[UpstreamMessage] = [
        {
            "role": role.value,
            "content": user_content(content, claimed.images.get(turn, ()))
            if role == ChatRole.user
            else content,
        }
        for turn, role, content in claimed.messages
    ]
    return ChatPlan(claimed.chat_id, claimed.turn, model_id, endpoint, conversation)


def finish_turn(
    connection: Connection, *, plan: ChatPlan, answer: Answer, withheld: str | None = None
) -> TurnEnd:
    """Store the answer and end the turn: the chat ready for a follow-up, or failed.

    `withheld`: the reason moderation withheld the answer for; the chat is then failed, the
    answer kept for the operator but never shown or replayed, and the refusal counted. Each
    answer counts for the circuit breaker as a battle's does (`turns.finish_turn`): a failed one
    adds a failure in a row, any other (a withheld one too: the model did answer) resets them."""
    failure = answer.failure
    connection.execute(
        insert(ChatMessage).values(
            chat_id=plan.chat_id,
            turn=plan.turn,
            role=ChatRole.assistant,
            content=answer.text,
            finish_reason=answer.finish_reason if failure is None else None,
            error=None if failure is None else f"{failure.kind}: {failure.detail}"[:10_000],
            first_token_ms=answer.first_token_ms,
            duration_ms=answer.duration_ms,
            withheld=failure is None and withheld is not None,
            created_at=utcnow(),
        )
    )
    count_answer(connection, model_id=plan.model_id, answered=failure is None)
    if failure is not None:
        ended = TurnEnd.failed
    elif withheld is not None:
        ended = TurnEnd.withheld
        record_refusal(connection, stage="answer", reason=withheld, chat_id=plan.chat_id)
    else:
        ended = TurnEnd.ready
    connection.execute(
        update(Chat)
        .where(Chat.id == plan.chat_id, Chat.status == BattleStatus.streaming)
        .values(status=BattleStatus.ready if ended is TurnEnd.ready else BattleStatus.failed)
    )
    return ended


def fail_interrupted_turn(connection: Connection, *, chat_id: str, turn: int) -> bool:
    """End a turn whose worker stopped while streaming it: failed, the answer with an error."""
    failed = connection.execute(
        update(Chat)
        .where(Chat.id == chat_id, Chat.status == BattleStatus.streaming)
        .values(status=BattleStatus.failed)
    )
    if failed.rowcount != 1:
        return False
    connection.execute(
        insert(ChatMessage).values(
            chat_id=chat_id,
            turn=turn,
            role=ChatRole.assistant,
            content="",
            error=INTERRUPTED,
            created_at=utcnow(),
        )
    )
    return True


def fail_interrupted_turns(connection: Connection, *, worker: str) -> int:
    """`fail_interrupted_turn` for every chat turn `worker` (gone) was streaming; how many."""
    streaming = connection.execute(
        select(Chat.id, Chat.turns).where(
            Chat.status == BattleStatus.streaming, Chat.streamed_by == worker
        )
    ).all()
    return sum(
        fail_interrupted_turn(connection, chat_id=chat_id, turn=turn) for chat_id, turn in streaming
    )


def abandon_turn(connection: Connection, *, claimed: ClaimedChatTurn) -> None:
    """A claimed turn that cannot be run (an unreadable key): failed."""
    fail_interrupted_turn(connection, chat_id=claimed.chat_id, turn=claimed.turn)


def record_feedback(
    connection: Connection, *, chat_id: str, turn: int, rating: Feedback, visitor: Visitor
) -> None:
    """The visitor's thumbs on the answer of `turn`; a second one replaces the first."""
    found = connection.execute(
        select(Chat.session_hash, Chat.model_id).where(Chat.id == chat_id)
    ).one_or_none()
    if found is None:
        raise ChatNotFound()
    session_hash, model_id = found
    _owned(session_hash, visitor)
    answered = connection.execute(
        select(ChatMessage.error, ChatMessage.withheld).where(
            ChatMessage.chat_id == chat_id,
            ChatMessage.turn == turn,
            ChatMessage.role == ChatRole.assistant,
        )
    ).one_or_none()
    if answered is None:
        raise Conflict(f"turn: this chat has no answer for turn {turn} yet; rate an answer shown")
    if answered.error is not None:
        raise Conflict(f"turn: the answer of turn {turn} failed; there is nothing to rate")
    if answered.withheld:
        raise Conflict(
            f"turn: the answer of turn {turn} was withheld by moderation; there is nothing to rate"
        )
    dialect_insert = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(ChatFeedback).values(
        chat_id=chat_id, model_id=model_id, turn=turn, rating=rating, created_at=utcnow()
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["chat_id", "turn"],
            set_={"rating": statement.excluded.rating, "created_at": statement.excluded.created_at},
        )
    )


def chat_view(connection: Connection, *, chat_id: str, visitor: Visitor) -> ChatOut:
    """The visitor's chat as its page shows it."""
    found = connection.execute(
        select(
            Chat.session_hash,
            Chat.status,
            Chat.turns,
            Chat.regenerations,
            Chat.created_at,
            Model.name,
            Model.organization,
            Model.supports_images,
        )
        .join(Model, Model.id == Chat.model_id)
        .where(Chat.id == chat_id)
    ).one_or_none()
    if found is None:
        raise ChatNotFound()
    session_hash, status, turns, regenerations, created_at, name, organization, reads_images = found
    _owned(session_hash, visitor)
    thumbs = dict(
        connection.execute(
            select(ChatFeedback.turn, ChatFeedback.rating).where(ChatFeedback.chat_id == chat_id)
        ).all()
    )
    image_counts = chat_image_counts(connection, chat_id=chat_id)
    messages = [
        ChatMessageOut(
            turn=turn,
            role=role.value,
            content=content,
            finish_reason=finish_reason,
            error=CHAT_ERROR if error else None,
            feedback=thumbs.get(turn) if role == ChatRole.assistant else None,
            image_count=image_counts.get(turn, 0) if role == ChatRole.user else 0,
        )
        if not withheld
        else ChatMessageOut(
            turn=turn, role=role.value, content="", error=CHAT_WITHHELD, withheld=True
        )
        for turn, role, content, finish_reason, error, withheld in connection.execute(
            select(
                ChatMessage.turn,
                ChatMessage.role,
                ChatMessage.content,
                ChatMessage.finish_reason,
                ChatMessage.error,
                ChatMessage.withheld,
            )
            .where(ChatMessage.chat_id == chat_id)
            .order_by(ChatMessage.turn, ChatMessage.id)
        )
    ]
    return ChatOut(
        chat_id=chat_id,
        model=ChatModelOut(name=name, organization=organization, supports_images=reads_images),
        status=status,
        turns=turns,
        regenerations=regenerations,
        created_at=created_at,
        messages=messages,
    )


@dataclass(frozen=True)
class PastChatTurn:
    """The latest turn's answer when no turn could be claimed: what a reload replays."""

    content: str
    finish_reason: str | None
    failed: bool
    # Moderation withheld it: replayed as such, never as text.
    withheld: bool = False


def turn_to_replay(
    connection: Connection, *, chat_id: str, visitor: Visitor, stale_after: timedelta
) -> PastChatTurn:
    """The latest answer to replay, or raise why there is none (not found, not the visitor's,
    streaming elsewhere). A write: a turn whose worker died is ended here."""
    found = connection.execute(
        select(Chat.session_hash, Chat.status, Chat.turns, Chat.stream_started_at).where(
            Chat.id == chat_id
        )
    ).one_or_none()
    if found is None:
        raise ChatNotFound()
    session_hash, status, turns, started_at = found
    _owned(session_hash, visitor)
    if status == BattleStatus.pending:
        raise Conflict("This chat is already streaming in another tab or request.")
    if status == BattleStatus.streaming:
        if started_at is None or utcnow() - started_at <= stale_after:
            raise Conflict("This chat is already streaming in another tab or request.")
        fail_interrupted_turn(connection, chat_id=chat_id, turn=turns)
    answer = connection.execute(
        select(
            ChatMessage.content, ChatMessage.finish_reason, ChatMessage.error, ChatMessage.withheld
        ).where(
            ChatMessage.chat_id == chat_id,
            ChatMessage.turn == turns,
            ChatMessage.role == ChatRole.assistant,
        )
    ).one()
    if answer.withheld:
        return PastChatTurn("", None, failed=True, withheld=True)
    return PastChatTurn(answer.content, answer.finish_reason, answer.error is not None)
