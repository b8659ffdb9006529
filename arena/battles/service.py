"""The battle lifecycle: create, add turns, claim a turn for streaming, store answers, vote."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased

from arena.battles import integrity
from arena.battles.sampling import draw_pair, read_candidates
from arena.battles.schemas import BattleOut, MessageOut, Reveal, RevealedModel
from arena.battles.settled import closed_for_votes, vote_window, votes_closed_for
from arena.config import Settings
from arena.db import WRITE_TRANSACTION, writer_turn
from arena.errors import (
    ArenaError,
    BattleClosed,
    BattleFailed,
    BattleNotFound,
    BattleNotReady,
    Conflict,
    InvalidInput,
    NotYourBattle,
    VoteAlreadyCast,
)
from arena.models import (
    Battle,
    BattleStatus,
    Message,
    Model,
    Side,
    Vote,
    Winner,
    utcnow,
)
from arena.registry.keys import KeyRing
from arena.upstream.client import Answer, Endpoint
from arena.visitors import Visitor

# One text for every failure of every model, so an error never hints at who is behind a side.
NEUTRAL_ERROR = (
    "This answer could not be completed, so the battle cannot be voted on. "
    "Please start a new battle."
)
# Stored as each side's error when the worker relaying a turn stopped before the turn ended.
INTERRUPTED = "interrupted: the arena worker relaying this turn stopped before it ended"


@dataclass(frozen=True)
class SidePlan:
    model_id: int
    endpoint: Endpoint
    conversation: list[dict[str, str]]
    # For the identity-leak check once the answer is in; never sent to the visitor.
    name: str = ""
    organization: str = ""


@dataclass(frozen=True)
class TurnPlan:
    battle_id: str
    turn: int
    a: SidePlan
    b: SidePlan


def _check_prompt(prompt: str, settings: Settings) -> None:
    if len(prompt) > settings.max_prompt_chars:
        raise InvalidInput(
            f"prompt: {len(prompt)} characters is over the limit of {settings.max_prompt_chars}; "
            "shorten it and send again"
        )


_INSERT_BATTLE = insert(Battle)
_INSERT_MESSAGE = insert(Message)


@dataclass(frozen=True)
class DrawnPair:
    model_a_id: int
    model_b_id: int
    endpoints: list[Any]  # rows of _ENDPOINTS, for planning the first turn


def draw_battle_pair(connection: Connection, *, prompt: str, settings: Settings) -> DrawnPair:
    """Check the prompt, draw the pair (side A, side B) and read their endpoints: reads only,
    so that on SQLite the write lock is not held while they run."""
    _check_prompt(prompt, settings)
    candidates = read_candidates(connection, settings=settings)
    model_a_id, model_b_id = draw_pair(
        [c.model_id for c in candidates], weights=[c.weight for c in candidates]
    )
    return DrawnPair(model_a_id, model_b_id, _read_endpoints(connection, model_a_id, model_b_id))


def create_battle(
    connection: Connection,
    *,
    pair: DrawnPair,
    prompt: str,
    visitor: Visitor,
    settings: Settings,
) -> str:
    """Store the battle between the drawn pair and its first prompt; the battle's id."""
    model_a_id, model_b_id = pair.model_a_id, pair.model_b_id
    battle_id = secrets.token_urlsafe(16)
    flags = integrity.prompt_flags(connection, prompt=prompt, settings=settings)
    # Core statements, not ORM objects: this is the hot path of every battle.
    connection.execute(
        _INSERT_BATTLE,
        {
            "id": battle_id,
            "model_a_id": model_a_id,
            "model_b_id": model_b_id,
            "session_hash": visitor.session_hash,
            "ip_hash": visitor.ip_hash,
            "status": BattleStatus.pending,
            "turns": 1,
            "category_tags": [],
            "flags": flags,
        },
    )
    connection.execute(
        _INSERT_MESSAGE, {"battle_id": battle_id, "turn": 1, "side": Side.user, "content": prompt}
    )
    return battle_id


async def owned_battle(session: AsyncSession, battle_id: str, visitor: Visitor) -> Battle:
    battle = await session.get(Battle, battle_id)
    if battle is None:
        raise BattleNotFound()
    if not secrets.compare_digest(battle.session_hash, visitor.session_hash):
        raise NotYourBattle()
    return battle


async def add_turn(
    session: AsyncSession, *, battle_id: str, prompt: str, visitor: Visitor, settings: Settings
) -> Battle:
    _check_prompt(prompt, settings)
    battle = await owned_battle(session, battle_id, visitor)
    if battle.status == BattleStatus.voted:
        raise Conflict("This battle has been voted on; start a new battle to ask more.")
    if battle.status == BattleStatus.failed:
        raise BattleFailed()
    if battle.status != BattleStatus.ready:
        raise BattleNotReady("Both answers must finish before you send a follow-up.")
    window = vote_window(settings)
    if closed_for_votes(battle.created_at, now=utcnow(), window=window):
        # Over, and counted as such (settled.py): a follow-up would reopen it.
        raise BattleClosed(window)
    if battle.turns >= settings.max_turns:
        raise Conflict(
            f"This battle reached its limit of {settings.max_turns} turns; vote or start anew."
        )
    turn = battle.turns + 1
    claimed = await session.execute(
        update(Battle)
        .where(
            Battle.id == battle.id, Battle.status == BattleStatus.ready, Battle.turns == turn - 1
        )
        .values(status=BattleStatus.pending, turns=turn)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise BattleNotReady("Another request changed this battle just now; reload it.")
    session.add(Message(battle_id=battle.id, turn=turn, side=Side.user, content=prompt))
    await session.flush()
    return battle


@dataclass(frozen=True)
class PastTurn:
    """A turn that already streamed (or never will): what a reload replays."""

    messages: list[Message]
    status: BattleStatus


# Claim the waiting turn of a battle that is the visitor's, in one statement.
_CLAIM = (
    update(Battle)
    .where(
        Battle.id == bindparam("claimed_id"),
        Battle.session_hash == bindparam("claimed_by"),
        Battle.status == BattleStatus.pending,
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


def _read_endpoints(connection: Connection, model_a_id: int, model_b_id: int) -> list[Any]:
    return list(connection.execute(_ENDPOINTS, {"model_ids": [model_a_id, model_b_id]}))


def _conversation(messages: list[tuple[Side, str]], side: Side) -> list[dict[str, str]]:
    # Within a turn the prompt comes first: it is stored before the answers.
    conversation = []
    for message_side, content in messages:
        if message_side == Side.user:
            conversation.append({"role": "user", "content": content})
        elif message_side == side:
            conversation.append({"role": "assistant", "content": content})
    return conversation


@dataclass(frozen=True)
class ClaimedTurn:
    """A turn to stream, with what its plan is made of: read in the claim's transaction (one
    transaction fewer per battle), or known when the battle was created (`first_turn`)."""

    battle_id: str
    turn: int
    model_a_id: int
    model_b_id: int
    endpoints: list[Any]  # rows of _ENDPOINTS
    messages: list[tuple[Side, str]]


def claim_turn(
    connection: Connection, *, battle_id: str, visitor: Visitor, worker: str
) -> ClaimedTurn | None:
    """Take the visitor's waiting turn for streaming by `worker` (one UPDATE ... RETURNING) and
    read what both upstream calls need; None when there is no such turn (see
    `unclaimable_turn`)."""
    claimed = _claim(connection, battle_id, visitor, worker)
    if claimed is None:
        return None
    model_a_id, model_b_id, turn = claimed
    endpoints = _read_endpoints(connection, model_a_id, model_b_id)
    messages = [
        (side, content)
        for side, content in connection.execute(_CONVERSATION, {"conversation_of": battle_id})
    ]
    return ClaimedTurn(battle_id, turn, model_a_id, model_b_id, endpoints, messages)


def first_turn(battle_id: str, pair: DrawnPair, prompt: str) -> ClaimedTurn:
    """What the first turn of a battle just created is made of, as its claim would read it."""
    return ClaimedTurn(
        battle_id, 1, pair.model_a_id, pair.model_b_id, pair.endpoints, [(Side.user, prompt)]
    )


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
        conversation = _conversation(claimed.messages, side)
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


async def unclaimable_turn(
    session: AsyncSession, *, battle_id: str, visitor: Visitor, settings: Settings
) -> PastTurn:
    """Why a turn could not be claimed: not found, not the visitor's, streaming elsewhere, or
    already streamed (its stored answers then, to replay). In a write transaction: a turn whose
    worker died is ended here."""
    battle = await owned_battle(session, battle_id, visitor)
    if battle.status == BattleStatus.pending:  # claimed and given back in between: rare
        raise Conflict("This battle is already streaming in another tab or request.")
    if battle.status == BattleStatus.streaming and battle.stream_started_at is not None:
        stale_after = timedelta(seconds=settings.total_timeout + 30)
        if utcnow() - battle.stream_started_at <= stale_after:
            raise Conflict("This battle is already streaming in another tab or request.")
        # The worker streaming it died and no worker started since (which would have settled
        # it, see arena/workers.py): end the turn as failed rather than hang forever.
        turn = battle.turns
        await session.run_sync(
            lambda sync: fail_interrupted_turn(sync.connection(), battle_id=battle_id, turn=turn)
        )
        await session.refresh(battle)
    return PastTurn(await stored_turn(session, battle=battle), battle.status)


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
_SETTLE_READY = (
    update(Battle)
    .where(Battle.id == bindparam("settled_id"))
    .values(
        status=BattleStatus.ready,
        ready_at=bindparam("settled_at"),
        answer_chars=bindparam("settled_chars"),
    )
)
_SETTLE_FAILED = (
    update(Battle)
    .where(Battle.id == bindparam("settled_id"))
    .values(status=BattleStatus.failed, ready_at=None)
)


def finish_turn(
    connection: Connection,
    *,
    plan: TurnPlan,
    answers: dict[Side, Answer],
    identity_aliases: Mapping[str, Sequence[str]],
) -> bool:
    """Store both answers and settle the battle: ready if both answered, failed otherwise.

    A ready battle keeps the length of the latest answers (for the reading-time check at the
    vote) and is flagged when an answer names its own model or organisation."""
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
            if answered:
                connection.execute(_RESET_FAILURES, {"answered_ids": [model_id]})
            else:
                connection.execute(_COUNT_FAILURE, {"failing_id": model_id})
    if not all(answer.ok for answer in answers.values()):
        connection.execute(_SETTLE_FAILED, {"settled_id": plan.battle_id})
        return False
    texts = {side: answer.text for side, answer in answers.items()}
    connection.execute(
        _SETTLE_READY,
        {
            "settled_id": plan.battle_id,
            "settled_at": utcnow(),
            "settled_chars": sum(len(text) for text in texts.values()),
        },
    )
    models = {
        Side.a: (plan.a.name, plan.a.organization),
        Side.b: (plan.b.name, plan.b.organization),
    }
    if integrity.answers_name_themselves(texts, models, identity_aliases):
        integrity.flag_battle(connection, battle_id=plan.battle_id, flag=integrity.IDENTITY_LEAK)
    return True


async def _reveal_models(session: AsyncSession, model_a_id: int, model_b_id: int) -> Reveal:
    # One query for both sides: the vote path counts its round trips.
    found = {
        model_id: RevealedModel(name=name, organization=organization)
        for model_id, name, organization in await session.execute(
            select(Model.id, Model.name, Model.organization).where(
                Model.id.in_([model_a_id, model_b_id])
            )
        )
    }
    return Reveal(model_a=found[model_a_id], model_b=found[model_b_id])


async def _reveal(session: AsyncSession, battle: Battle) -> Reveal:
    return await _reveal_models(session, battle.model_a_id, battle.model_b_id)


async def _why_not_votable(
    connection: AsyncConnection,
    battle_id: str,
    visitor: Visitor,
    *,
    now: datetime,
    window: timedelta,
) -> ArenaError:
    async with AsyncSession(bind=connection) as session:
        battle = await owned_battle(session, battle_id, visitor)
    if battle.status == BattleStatus.failed:
        return BattleFailed()
    if battle.status == BattleStatus.voted:
        return VoteAlreadyCast()
    if closed_for_votes(battle.created_at, now=now, window=window):
        return BattleClosed(window)
    if battle.status in (BattleStatus.pending, BattleStatus.streaming):
        return BattleNotReady("Wait until both answers have finished, then vote.")
    return VoteAlreadyCast()


_MODEL_A, _MODEL_B = aliased(Model), aliased(Model)
# Built once rather than per vote: the vote path is the hottest write.
_VOTABLE = (
    select(
        _MODEL_A.name,
        _MODEL_A.organization,
        _MODEL_B.name,
        _MODEL_B.organization,
        Battle.flags,
        Battle.answer_chars,
        Battle.stream_started_at,
        Battle.ready_at,
    )
    .join(_MODEL_A, _MODEL_A.id == Battle.model_a_id)
    .join(_MODEL_B, _MODEL_B.id == Battle.model_b_id)
    .where(
        Battle.id == bindparam("voted_battle_id"),
        Battle.session_hash == bindparam("voter_session_hash"),
        Battle.status == BattleStatus.ready,
        # Inside its vote window: past it the battle counts as settled (settled.py), and the
        # figures that count it name its pair.
        Battle.created_at > bindparam("votes_closed_for", type_=Battle.__table__.c.created_at.type),
    )
)
# The status guard makes settling the battle the one winner of racing votes.
_SETTLE_BATTLE = (
    update(Battle)
    .where(Battle.id == bindparam("voted_battle_id"), Battle.status == BattleStatus.ready)
    .values(status=BattleStatus.voted)
)
_VOTE_COLUMNS = (
    "winner",
    "session_hash",
    "ip_hash",
    "created_at",
    "seconds_to_vote",
    "counted",
    "flags",
)


def _vote_value(column: str) -> Any:
    # Not the column's own name: an UPDATE takes a parameter named like one of its table's
    # columns as a value to SET, and battle has columns named like vote's.
    return bindparam("vote_" + column, type_=Vote.__table__.c[column].type)


# Every column given at each vote, so that the one compiled form serves them all.
_STORE_VOTE = insert(Vote).values(
    battle_id=bindparam("voted_battle_id"),
    **{name: _vote_value(name) for name in _VOTE_COLUMNS},
)
# PostgreSQL settles the battle and stores the vote in one statement, atomic on its own: one
# round trip, no transaction to open and commit (SQLite has no UPDATE inside a WITH).
_SETTLED = _SETTLE_BATTLE.returning(Battle.id).cte("settled")
_SETTLE_AND_STORE_VOTE = (
    insert(Vote)
    .from_select(
        ["battle_id", *_VOTE_COLUMNS],
        select(_SETTLED.c.id, *(_vote_value(name) for name in _VOTE_COLUMNS)),
    )
    .returning(Vote.id)  # a row when the vote is stored (rowcount is not kept for an INSERT)
)


async def _settle_and_store_on_sqlite(
    engine: AsyncEngine, keys: dict[str, str], vote: dict[str, Any]
) -> bool:
    """False when another request settled the battle since the read."""
    # After this process's earlier writers, holding no connection while it waits (writer_turn).
    async with writer_turn(engine), engine.connect() as connection:
        write = await connection.execution_options(**WRITE_TRANSACTION)
        try:
            async with write.begin():
                if (await write.execute(_SETTLE_BATTLE, keys)).rowcount != 1:
                    return False
                await write.execute(_STORE_VOTE, vote)
        except IntegrityError:
            raise VoteAlreadyCast() from None
    return True


async def cast_vote(
    engine: AsyncEngine,
    *,
    battle_id: str,
    winner: Winner,
    visitor: Visitor,
    window: timedelta,
    checks: integrity.VoteChecks | None = None,
) -> Reveal:
    """Store the vote and settle the battle, or raise why this visitor cannot vote on it (a
    battle takes its vote within `window` of its start).

    Returns once the vote is committed: an acknowledged vote is a durable vote."""
    # Core statements: the ORM adds nothing to these, and its bookkeeping showed in the vote
    # path's profile. The read takes no lock; the write checks again that the battle is ready.
    keys = {"voted_battle_id": battle_id, "voter_session_hash": visitor.session_hash}
    on_postgresql = engine.dialect.name == "postgresql"
    asked_at = datetime.now(UTC)
    async with engine.connect() as connection:
        if on_postgresql:
            # Each statement its own transaction: no BEGIN, COMMIT or ROLLBACK round trips.
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        votable = (
            await connection.execute(
                _VOTABLE, {**keys, "votes_closed_for": votes_closed_for(asked_at, window)}
            )
        ).one_or_none()
        if votable is None:
            raise await _why_not_votable(
                connection, battle_id, visitor, now=asked_at, window=window
            )
        name_a, org_a, name_b, org_b, battle_flags, answer_chars, shown_at, ready_at = votable
        now = datetime.now(UTC)
        # Every vote is stored; the reasons it does not count are kept with it.
        flags = integrity.vote_flags(
            integrity.BattleTiming(battle_flags, answer_chars, shown_at, ready_at),
            now=now,
            checks=checks,
        )
        vote = {
            **keys,
            "vote_winner": winner,
            "vote_session_hash": visitor.session_hash,
            "vote_ip_hash": visitor.ip_hash,
            "vote_created_at": now,
            "vote_seconds_to_vote": (now - ready_at).total_seconds() if ready_at else None,
            "vote_counted": not flags,
            "vote_flags": flags,
        }
        if on_postgresql:
            try:
                stored = (await connection.execute(_SETTLE_AND_STORE_VOTE, vote)).first()
            except IntegrityError:
                raise VoteAlreadyCast() from None
            if stored is None:  # another request settled the battle since the read
                raise await _why_not_votable(
                    connection, battle_id, visitor, now=asked_at, window=window
                )
    if not on_postgresql and not await _settle_and_store_on_sqlite(engine, keys, vote):
        async with engine.connect() as connection:
            raise await _why_not_votable(
                connection, battle_id, visitor, now=asked_at, window=window
            )
    return Reveal(
        model_a=RevealedModel(name=name_a, organization=org_a),
        model_b=RevealedModel(name=name_b, organization=org_b),
    )


async def battle_view(session: AsyncSession, *, battle_id: str, visitor: Visitor) -> BattleOut:
    battle = await owned_battle(session, battle_id, visitor)
    messages = (
        await session.scalars(
            select(Message).where(Message.battle_id == battle.id).order_by(Message.turn, Message.id)
        )
    ).all()
    vote = await session.scalar(select(Vote).where(Vote.battle_id == battle.id))
    return BattleOut(
        battle_id=battle.id,
        status=battle.status,
        turns=battle.turns,
        created_at=battle.created_at,
        messages=[
            MessageOut(
                turn=m.turn,
                side=m.side.value,
                content=m.content,
                finish_reason=m.finish_reason,
                error=NEUTRAL_ERROR if m.error else None,
            )
            for m in messages
        ],
        winner=vote.winner if vote else None,
        models=await _reveal(session, battle) if vote else None,
    )


async def stored_turn(session: AsyncSession, *, battle: Battle) -> list[Message]:
    """The answers of the latest turn, to replay a stream that already happened."""
    return list(
        (
            await session.scalars(
                select(Message)
                .where(
                    Message.battle_id == battle.id,
                    Message.turn == battle.turns,
                    Message.side != Side.user,
                )
                .order_by(Message.side)
            )
        ).all()
    )


__all__ = [
    "NEUTRAL_ERROR",
    "ClaimedTurn",
    "PastTurn",
    "TurnPlan",
    "abandon_turn",
    "add_turn",
    "battle_view",
    "cast_vote",
    "claim_turn",
    "create_battle",
    "draw_battle_pair",
    "fail_interrupted_turn",
    "fail_interrupted_turns",
    "finish_turn",
    "owned_battle",
    "plan_turn",
    "stored_turn",
    "unclaimable_turn",
]
