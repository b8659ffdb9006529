"""The vote: stored once per battle, by the session that saw it, within its vote window; one
function per database, each as few round trips as that database allows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased

from arena import metrics
from arena.battles import integrity
from arena.battles.schemas import Reveal, RevealedModel
from arena.battles.settled import closed_for_votes, votes_closed_for
from arena.battles.views import owned_battle
from arena.db import WRITE_TRANSACTION, writer_turn
from arena.errors import (
    ArenaError,
    BattleClosed,
    BattleErased,
    BattleFailed,
    BattleNotReady,
    VoteAlreadyCast,
)
from arena.models import Battle, BattleMode, BattleStatus, Model, Vote, Winner
from arena.visitors import Visitor


@dataclass(frozen=True)
class _Ballot:
    """A vote as asked for, before the battle is read."""

    battle_id: str
    winner: Winner
    visitor: Visitor
    window: timedelta
    checks: integrity.VoteChecks | None
    asked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def keys(self) -> dict[str, str]:
        return {"voted_battle_id": self.battle_id, "voter_session_hash": self.visitor.session_hash}


async def cast_vote(
    engine: AsyncEngine,
    *,
    battle_id: str,
    winner: Winner,
    visitor: Visitor,
    window: timedelta,
    checks: integrity.VoteChecks | None = None,
) -> Reveal:
    """Store the vote and mark the battle voted, or raise why this visitor cannot vote on it (a
    battle takes its vote within `window` of its start).

    Returns once the vote is committed: an acknowledged vote is a durable vote. Core statements:
    the ORM adds nothing to these, and its bookkeeping showed in the vote path's profile. The
    read takes no lock; the write checks again that the battle is ready."""
    ballot = _Ballot(battle_id, winner, visitor, window, checks)
    if engine.dialect.name == "postgresql":
        return await _cast_vote_on_postgresql(engine, ballot)
    return await _cast_vote_on_sqlite(engine, ballot)


async def _cast_vote_on_postgresql(engine: AsyncEngine, ballot: _Ballot) -> Reveal:
    async with engine.connect() as connection:
        # Each statement its own transaction: no BEGIN, COMMIT or ROLLBACK round trips.
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        votable = await _votable(connection, ballot)
        try:
            vote = _vote_row(ballot, votable)
            stored = (await connection.execute(_MARK_VOTED_AND_STORE_VOTE, vote)).first()
        except IntegrityError:
            raise VoteAlreadyCast() from None
        if stored is None:  # another request marked the battle voted since the read
            raise await _why_not_votable(connection, ballot)
    metrics.vote_stored(vote["vote_flags"])
    return _reveal(votable)


async def _cast_vote_on_sqlite(engine: AsyncEngine, ballot: _Ballot) -> Reveal:
    async with engine.connect() as connection:
        votable = await _votable(connection, ballot)
    vote = _vote_row(ballot, votable)
    # After this process's earlier writers, holding no connection while it waits (writer_turn).
    async with writer_turn(engine), engine.connect() as connection:
        write = await connection.execution_options(**WRITE_TRANSACTION)
        try:
            async with write.begin():
                marked = (await write.execute(_MARK_VOTED, ballot.keys)).rowcount == 1
                if marked:
                    await write.execute(_STORE_VOTE, vote)
        except IntegrityError:
            raise VoteAlreadyCast() from None
    if not marked:  # another request marked the battle voted since the read
        async with engine.connect() as connection:
            raise await _why_not_votable(connection, ballot)
    metrics.vote_stored(vote["vote_flags"])
    return _reveal(votable)


async def _votable(connection: AsyncConnection, ballot: _Ballot) -> Any:
    """The battle's row of `_VOTABLE`, or raise why the ballot cannot be cast."""
    closed_for = votes_closed_for(ballot.asked_at, ballot.window)
    votable = (
        await connection.execute(_VOTABLE, {**ballot.keys, "votes_closed_for": closed_for})
    ).one_or_none()
    if votable is None:
        raise await _why_not_votable(connection, ballot)
    return votable


def _vote_row(ballot: _Ballot, votable: Any) -> dict[str, Any]:
    """The values of `_STORE_VOTE`: every vote is stored, with the reasons it does not count."""
    *_names, battle_flags, answer_chars, shown_at, ready_at, mode = votable
    now = datetime.now(UTC)
    flags = integrity.vote_flags(
        integrity.BattleTiming(battle_flags, answer_chars, shown_at, ready_at),
        now=now,
        checks=ballot.checks,
    )
    if mode == BattleMode.named:
        flags = integrity.named_vote_flags(flags)
    return {
        **ballot.keys,
        "vote_winner": ballot.winner,
        "vote_session_hash": ballot.visitor.session_hash,
        "vote_ip_hash": ballot.visitor.ip_hash,
        "vote_created_at": now,
        "vote_seconds_to_vote": (now - ready_at).total_seconds() if ready_at else None,
        "vote_counted": not flags,
        "vote_flags": flags,
    }


def _reveal(votable: Any) -> Reveal:
    name_a, org_a, name_b, org_b, *_timing = votable
    return Reveal(
        model_a=RevealedModel(name=name_a, organization=org_a),
        model_b=RevealedModel(name=name_b, organization=org_b),
    )


async def _why_not_votable(connection: AsyncConnection, ballot: _Ballot) -> ArenaError:
    async with AsyncSession(bind=connection) as session:
        battle = await owned_battle(session, ballot.battle_id, ballot.visitor)
    if battle.erased_at is not None:
        return BattleErased()
    if battle.status == BattleStatus.failed:
        return BattleFailed()
    if battle.status == BattleStatus.voted:
        return VoteAlreadyCast()
    if closed_for_votes(battle.created_at, now=ballot.asked_at, window=ballot.window):
        return BattleClosed(ballot.window)
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
        Battle.mode,
    )
    .join(_MODEL_A, _MODEL_A.id == Battle.model_a_id)
    .join(_MODEL_B, _MODEL_B.id == Battle.model_b_id)
    .where(
        Battle.id == bindparam("voted_battle_id"),
        Battle.session_hash == bindparam("voter_session_hash"),
        Battle.status == BattleStatus.ready,
        Battle.erased_at.is_(None),
        # Inside its vote window: past it the battle counts as settled (settled.py), and the
        # figures that count it name its pair.
        Battle.created_at > bindparam("votes_closed_for", type_=Battle.__table__.c.created_at.type),
    )
)

# The status guard makes marking the battle voted the one winner of racing votes.
_MARK_VOTED = (
    update(Battle)
    .where(
        Battle.id == bindparam("voted_battle_id"),
        Battle.status == BattleStatus.ready,
        Battle.erased_at.is_(None),
    )
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

# PostgreSQL marks the battle voted and stores the vote in one statement, atomic on its own: one
# round trip, no transaction to open and commit (SQLite has no UPDATE inside a WITH).
_VOTED = _MARK_VOTED.returning(Battle.id).cte("voted")
_MARK_VOTED_AND_STORE_VOTE = (
    insert(Vote)
    .from_select(
        ["battle_id", *_VOTE_COLUMNS],
        select(_VOTED.c.id, *(_vote_value(name) for name in _VOTE_COLUMNS)),
    )
    .returning(Vote.id)  # a row when the vote is stored (rowcount is not kept for an INSERT)
)
