"""A battle's turns, as plain functions over a sync `Connection`, each run in one transaction
of the writer thread (`db.Transactions.write`, so each must be safe to run twice): a follow-up
asked for, a turn claimed for streaming and planned, its answers stored, and a turn that cannot
run ended as failed."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from arena import moderation
from arena.battles import integrity
from arena.battles.settled import closed_for_votes, vote_window
from arena.config import Settings
from arena.errors import (
    BattleClosed,
    BattleErased,
    BattleFailed,
    BattleNotFound,
    BattleNotReady,
    Conflict,
    InvalidInput,
    NotYourBattle,
)
from arena.images.content import user_content
from arena.images.decoding import CleanImage
from arena.images.store import read_prompt_images
from arena.models import Battle, BattleStatus, Message, Model, Side, utcnow
from arena.ratings.style_control import STYLE_COLUMNS
from arena.ratings.style_features import conv_metadata, style_sums
from arena.registry.keys import KeyRing
from arena.upstream.client import Answer, ChatMessage, Endpoint
from arena.visitors import Visitor

# One text for every failure of every model, so an error never hints at who is behind a side.
NEUTRAL_ERROR = (
    "This answer could not be completed, so the battle cannot be voted on. "
    "Please start a new battle."
)
# Stored as each side's error when the worker relaying a turn stopped before the turn ended.
INTERRUPTED = "interrupted: the arena worker relaying this turn stopped before it ended"


class TurnEnd(enum.StrEnum):
    """How a turn ended: `ready` to vote on, `failed` (a side did not answer), or `withheld`
    (both answered, and moderation withheld the answers: unvotable too)."""

    ready = "ready"
    failed = "failed"
    withheld = "withheld"


@dataclass(frozen=True)
class SidePlan:
    model_id: int
    endpoint: Endpoint
    conversation: list[ChatMessage]
    # For the identity-leak check once the answer is in; never sent to the visitor.
    name: str = ""
    organization: str = ""


@dataclass(frozen=True)
class TurnPlan:
    battle_id: str
    turn: int
    a: SidePlan
    b: SidePlan


_INSERT_MESSAGE = insert(Message)


def check_prompt(prompt: str, settings: Settings) -> None:
    if len(prompt) > settings.max_prompt_chars:
        raise InvalidInput(
            f"prompt: {len(prompt)} characters is over the limit of {settings.max_prompt_chars}; "
            "shorten it and send again"
        )


def check_owned(session_hash: str, visitor: Visitor) -> None:
    """Raise unless the battle with `session_hash` is the visitor's."""
    if not secrets.compare_digest(session_hash, visitor.session_hash):
        raise NotYourBattle()


_FOLLOWED_UP = select(
    Battle.session_hash,
    Battle.status,
    Battle.turns,
    Battle.created_at,
    Battle.erased_at,
    Battle.regenerations,
).where(Battle.id == bindparam("followed_up_id"))
# The status and turn guards make the follow-up the one winner of racing requests.
_ASK_FOLLOW_UP = (
    update(Battle)
    .where(
        Battle.id == bindparam("followed_up_id"),
        Battle.status == BattleStatus.ready,
        Battle.turns == bindparam("turns_before"),
        Battle.erased_at.is_(None),
    )
    .values(status=BattleStatus.pending, turns=bindparam("turns_after"))
)


def _open_for_another_turn(
    connection: Connection, battle_id: str, visitor: Visitor, settings: Settings, *, asking: str
) -> tuple[int, int]:
    """The battle's turns and regenerations, or raise why it takes no new turn now (a follow-up
    or a regeneration, as `asking` says). Regenerations count as turns against the limit: each
    one costs both models a call, as a follow-up does."""
    battle = connection.execute(_FOLLOWED_UP, {"followed_up_id": battle_id}).one_or_none()
    if battle is None:
        raise BattleNotFound()
    session_hash, status, turns, created_at, erased_at, regenerations = battle
    check_owned(session_hash, visitor)
    if erased_at is not None:
        raise BattleErased()
    if status == BattleStatus.voted:
        raise Conflict("This battle has been voted on; start a new battle to ask more.")
    if status == BattleStatus.failed:
        raise BattleFailed()
    if status != BattleStatus.ready:
        raise BattleNotReady(f"Both answers must finish before you {asking}.")
    window = vote_window(settings)
    if closed_for_votes(created_at, now=utcnow(), window=window):
        # Over, and counted as such (settled.py): a new turn would reopen it.
        raise BattleClosed(window)
    if turns + regenerations >= settings.max_turns:
        raise Conflict(
            f"This battle reached its limit of {settings.max_turns} turns (regenerations "
            "count as turns); vote or start a new battle."
        )
    return turns, regenerations


# The same guards as a follow-up's, and the count as it was read: one winner among racing requests.
_ASK_AGAIN = (
    update(Battle)
    .where(
        Battle.id == bindparam("regenerated_id"),
        Battle.status == BattleStatus.ready,
        Battle.turns == bindparam("turns_before"),
        Battle.regenerations == bindparam("regenerations_before"),
        Battle.erased_at.is_(None),
    )
    .values(status=BattleStatus.pending, regenerations=bindparam("regenerations_after"))
)
_FORGET_ANSWERS = delete(Message).where(
    Message.battle_id == bindparam("regenerated_id"),
    Message.turn == bindparam("regenerated_turn"),
    Message.side != Side.user,
)


def regenerate_turn(
    connection: Connection, *, battle_id: str, visitor: Visitor, settings: Settings
) -> int:
    """Ask both sides again for the latest turn, before the vote: its answers are dropped and
    the turn waits to be streamed anew (as FastChat's regenerate does, both sides at once). The
    battle's count of regenerations, which the exports carry.

    The answers shown last are the ones voted on. A battle flagged because an earlier answer
    named its model keeps the flag: its visitor read that answer."""
    turns, regenerations = _open_for_another_turn(
        connection, battle_id, visitor, settings, asking="ask for new answers"
    )
    asked = connection.execute(
        _ASK_AGAIN,
        {
            "regenerated_id": battle_id,
            "turns_before": turns,
            "regenerations_before": regenerations,
            "regenerations_after": regenerations + 1,
        },
    )
    if asked.rowcount != 1:
        raise BattleNotReady("Another request changed this battle just now; reload it.")
    connection.execute(_FORGET_ANSWERS, {"regenerated_id": battle_id, "regenerated_turn": turns})
    return regenerations + 1


def add_turn(
    connection: Connection, *, battle_id: str, prompt: str, visitor: Visitor, settings: Settings
) -> int:
    """Store the visitor's follow-up prompt as the battle's next turn, waiting to be streamed;
    the turn's number, or raise why the battle takes no follow-up now."""
    check_prompt(prompt, settings)
    turns, _regenerations = _open_for_another_turn(
        connection, battle_id, visitor, settings, asking="send a follow-up"
    )
    turn = turns + 1
    asked = connection.execute(
        _ASK_FOLLOW_UP,
        {"followed_up_id": battle_id, "turns_before": turns, "turns_after": turn},
    )
    if asked.rowcount != 1:
        raise BattleNotReady("Another request changed this battle just now; reload it.")
    connection.execute(
        _INSERT_MESSAGE,
        {"battle_id": battle_id, "turn": turn, "side": Side.user, "content": prompt},
    )
    return turn


# Claim the waiting turn of a battle that is the visitor's, in one statement.
_CLAIM = (
    update(Battle)
    .where(
        Battle.id == bindparam("claimed_id"),
        Battle.session_hash == bindparam("claimed_by"),
        Battle.status == BattleStatus.pending,
        # Erased while its turn waited: nothing may be streamed into it and stored.
        Battle.erased_at.is_(None),
    )
    .values(
        status=BattleStatus.streaming,
        stream_started_at=bindparam("started_at"),
        streamed_by=bindparam("claimed_for"),
    )
    .returning(Battle.model_a_id, Battle.model_b_id, Battle.turns)
)
_ENDPOINTS = select(
    Model.id,
    Model.name,
    Model.organization,
    Model.base_url,
    Model.upstream_model,
    Model.api_key_encrypted,
    Model.max_tokens,
    Model.temperature,
    Model.system_prompt,
).where(Model.id.in_(bindparam("model_ids", expanding=True)))
_CONVERSATION = (
    select(Message.side, Message.content)
    .where(Message.battle_id == bindparam("conversation_of"))
    .order_by(Message.turn, Message.id)
)


def _claim(connection: Connection, battle_id: str, visitor: Visitor, worker: str) -> Any:
    """The claimed battle's pair and turn count, or None (see `_CLAIM`)."""
    return connection.execute(
        _CLAIM,
        {
            "claimed_id": battle_id,
            "claimed_by": visitor.session_hash,
            "started_at": utcnow(),
            "claimed_for": worker,
        },
    ).one_or_none()


def read_endpoints(connection: Connection, model_a_id: int, model_b_id: int) -> list[Any]:
    return list(connection.execute(_ENDPOINTS, {"model_ids": [model_a_id, model_b_id]}))


def _conversation(
    messages: list[tuple[Side, str]], side: Side, images: Mapping[int, Sequence[CleanImage]]
) -> list[ChatMessage]:
    # Within a turn the prompt comes first: it is stored before the answers; the n-th prompt is
    # turn n's.
    conversation: list[ChatMessage] = []
    turn = 0
    for message_side, content in messages:
        if message_side == Side.user:
            turn += 1
            attached = images.get(turn, ())
            conversation.append({"role": "user", "content": user_content(content, attached)})
        elif message_side == side:
            conversation.append({"role": "assistant", "content": content})
    return conversation


@dataclass(frozen=True)
class ClaimedTurn:
    """A turn to stream, with what its plan is made of: read in the claim's transaction (one
    transaction fewer per battle), or known when the battle was created (`creation.first_turn`)."""

    battle_id: str
    turn: int
    model_a_id: int
    model_b_id: int
    endpoints: list[Any]  # rows of _ENDPOINTS
    messages: list[tuple[Side, str]]
    # The images of the prompts that carry some, by turn
    images: Mapping[int, Sequence[CleanImage]] = field(default_factory=dict)


def claim_turn(
    connection: Connection, *, battle_id: str, visitor: Visitor, worker: str
) -> ClaimedTurn | None:
    """Take the visitor's waiting turn for streaming by `worker` (one UPDATE ... RETURNING) and
    read what both upstream calls need; None when there is no such turn (see
    `views.turn_to_replay`)."""
    claimed = _claim(connection, battle_id, visitor, worker)
    if claimed is None:
        return None
    model_a_id, model_b_id, turn = claimed
    endpoints = read_endpoints(connection, model_a_id, model_b_id)
    messages = [
        (side, content)
        for side, content in connection.execute(_CONVERSATION, {"conversation_of": battle_id})
    ]
    images = read_prompt_images(connection, battle_id=battle_id)
    return ClaimedTurn(battle_id, turn, model_a_id, model_b_id, endpoints, messages, images)


def claim_planned_turn(
    connection: Connection, *, plan: TurnPlan, visitor: Visitor, worker: str
) -> bool:
    """Take the turn `plan` was made for (see planned.py) for streaming by `worker`; False when
    it is not the visitor's waiting turn any more (another request took it)."""
    claimed = _claim(connection, plan.battle_id, visitor, worker)
    if claimed is None:
        return False
    # A battle's turns advance only once the waiting one has streamed.
    if claimed.turns != plan.turn:
        raise RuntimeError(
            f"battle {plan.battle_id}: turn {plan.turn} was planned, the claim found turn "
            f"{claimed.turns} waiting"
        )
    return True


def plan_turn(claimed: ClaimedTurn, *, keys: KeyRing) -> TurnPlan:
    """What both upstream calls of a claimed turn send. Outside the claim's transaction: on
    SQLite the write lock is not held while keys are decrypted."""
    sides = {}
    for row in claimed.endpoints:
        (
            model_id,
            name,
            organization,
            base_url,
            upstream_model,
            api_key,
            max_tokens,
            temperature,
            system_prompt,
        ) = row
        endpoint = Endpoint(
            base_url=base_url,
            model=upstream_model,
            api_key=keys.decrypt(api_key) if api_key else None,
            max_tokens=max_tokens,
            temperature=temperature,
            system_prompt=system_prompt,
        )
        sides[model_id] = (endpoint, name, organization)

    def side_plan(model_id: int, side: Side) -> SidePlan:
        endpoint, name, organization = sides[model_id]
        conversation = _conversation(claimed.messages, side, claimed.images)
        return SidePlan(model_id, endpoint, conversation, name, organization)

    return TurnPlan(
        battle_id=claimed.battle_id,
        turn=claimed.turn,
        a=side_plan(claimed.model_a_id, Side.a),
        b=side_plan(claimed.model_b_id, Side.b),
    )


def abandon_turn(connection: Connection, *, claimed: ClaimedTurn) -> None:
    """A claimed turn that cannot be run: failed, as when its worker dies."""
    connection.execute(
        update(Battle)
        .where(Battle.id == claimed.battle_id, Battle.status == BattleStatus.streaming)
        .values(status=BattleStatus.failed)
    )


def fail_interrupted_turn(connection: Connection, *, battle_id: str, turn: int) -> bool:
    """End a turn whose worker stopped while streaming it: failed, each side with an error (the
    visitor's replay shows the neutral message). False when the turn is not streaming."""
    failed = connection.execute(
        update(Battle)
        .where(Battle.id == battle_id, Battle.status == BattleStatus.streaming)
        .values(status=BattleStatus.failed, ready_at=None)
    )
    if failed.rowcount != 1:
        return False
    connection.execute(
        _INSERT_MESSAGE,
        [
            {
                "battle_id": battle_id,
                "turn": turn,
                "side": side,
                "content": "",
                "error": INTERRUPTED,
            }
            for side in (Side.a, Side.b)
        ],
    )
    return True


def fail_interrupted_turns(connection: Connection, *, worker: str) -> int:
    """`fail_interrupted_turn` for every turn `worker` (gone) was streaming; how many."""
    streaming = connection.execute(
        select(Battle.id, Battle.turns).where(
            Battle.status == BattleStatus.streaming, Battle.streamed_by == worker
        )
    ).all()
    return sum(
        fail_interrupted_turn(connection, battle_id=battle_id, turn=turn)
        for battle_id, turn in streaming
    )


_RESET_FAILURES = (
    update(Model)
    .where(Model.id.in_(bindparam("answered_ids", expanding=True)), Model.consecutive_failures != 0)
    .values(consecutive_failures=0)
)
_COUNT_FAILURE = (
    update(Model)
    .where(Model.id == bindparam("failing_id"))
    .values(consecutive_failures=Model.consecutive_failures + 1)
)


def count_answer(connection: Connection, *, model_id: int, answered: bool) -> None:
    """One answer of the model in the circuit breaker's count of its failures in a row
    (`Model.consecutive_failures`, tripped by registry/health.py): an answer resets it, a failure
    adds one. Battles and direct chats alike."""
    if answered:
        connection.execute(_RESET_FAILURES, {"answered_ids": [model_id]})
    else:
        connection.execute(_COUNT_FAILURE, {"failing_id": model_id})


_MARK_READY = (
    update(Battle)
    .where(Battle.id == bindparam("finished_id"))
    .values(
        status=BattleStatus.ready,
        ready_at=bindparam("finished_at"),
        answer_chars=bindparam("finished_chars"),
        conv_metadata=bindparam("finished_style"),
        **{column: bindparam(f"finished_{column}") for column in STYLE_COLUMNS},
    )
)

_MARK_FAILED = (
    update(Battle)
    .where(Battle.id == bindparam("finished_id"))
    .values(status=BattleStatus.failed, ready_at=None)
)


def turn_style(plan: TurnPlan, answers: Mapping[Side, Answer]) -> dict[str, Any]:
    """The battle's style once this turn's answers are in (FastChat's conv_metadata): each
    side's earlier answers, from its conversation, and this one."""

    def answered(side_plan: SidePlan, answer: Answer) -> list[str]:
        earlier = [m["content"] for m in side_plan.conversation if m["role"] == "assistant"]
        return [*earlier, answer.text]

    return conv_metadata(answered(plan.a, answers[Side.a]), answered(plan.b, answers[Side.b]))


def finish_turn(
    connection: Connection,
    *,
    plan: TurnPlan,
    answers: dict[Side, Answer],
    identity_aliases: Mapping[str, Sequence[str]],
    withheld: str | None = None,
    style: Mapping[str, Any] | None = None,
) -> bool:
    """Store both answers and end the turn: the battle ready if both answered, failed otherwise.

    A ready battle keeps the length of the latest answers (for the reading-time check at the
    vote) and its style over all its answers (`style`, from turn_style, worked out here when
    not given: callers on the event loop work it out beforehand, off the writer's
    transaction), and is flagged when an answer names its own model or organisation.
    `withheld`: the reason moderation withheld the answers for; the battle is then failed and
    flagged `moderated` (its answers are kept for the operator, never shown or released again),
    though both models answered, so neither counts a failure."""
    rows = []
    outcomes: list[tuple[int, bool]] = []
    for side, side_plan in ((Side.a, plan.a), (Side.b, plan.b)):
        answer = answers[side]
        failure = answer.failure
        rows.append(
            {
                "battle_id": plan.battle_id,
                "turn": plan.turn,
                "side": side,
                "content": answer.text,
                "finish_reason": answer.finish_reason if failure is None else None,
                "error": None if failure is None else f"{failure.kind}: {failure.detail}"[:10_000],
                "first_token_ms": answer.first_token_ms,
                "duration_ms": answer.duration_ms,
                "output_chunks": answer.chunks,
            }
        )
        outcomes.append((side_plan.model_id, failure is None))
    connection.execute(_INSERT_MESSAGE, rows)
    # A model's row is written only when its count of consecutive failures changes (the reset
    # skips rows already at 0, the common case), and rows are taken in ascending id order: two
    # battles of the same pair on opposite sides, finishing together, once took the two row
    # locks in opposite orders and deadlocked on PostgreSQL.
    if all(answered for _, answered in outcomes):
        connection.execute(_RESET_FAILURES, {"answered_ids": sorted(m for m, _ in outcomes)})
    else:
        for model_id, answered in sorted(outcomes):
            count_answer(connection, model_id=model_id, answered=answered)
    if not all(answer.ok for answer in answers.values()):
        connection.execute(_MARK_FAILED, {"finished_id": plan.battle_id})
        return False
    if withheld is not None:
        connection.execute(_MARK_FAILED, {"finished_id": plan.battle_id})
        integrity.flag_battle(connection, battle_id=plan.battle_id, flag=moderation.MODERATED)
        moderation.record_refusal(
            connection, stage="answer", reason=withheld, battle_id=plan.battle_id
        )
        return False
    texts = {side: answer.text for side, answer in answers.items()}
    metadata = dict(style) if style is not None else turn_style(plan, answers)
    connection.execute(
        _MARK_READY,
        {
            "finished_id": plan.battle_id,
            "finished_at": utcnow(),
            "finished_chars": sum(len(text) for text in texts.values()),
            "finished_style": metadata,
            **{f"finished_{column}": n for column, n in style_sums(metadata).items()},
        },
    )
    models = {
        Side.a: (plan.a.name, plan.a.organization),
        Side.b: (plan.b.name, plan.b.organization),
    }
    if integrity.answers_name_themselves(texts, models, identity_aliases):
        integrity.flag_battle(connection, battle_id=plan.battle_id, flag=integrity.IDENTITY_LEAK)
    return True
