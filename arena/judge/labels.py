"""The labelling queue and the labels: which voted battles wait for the judge, claiming one,
storing a verdict or a failure with its backoff, relabelling, and reading the refusal label.

A battle enters the queue once its vote is cast and counted (so a label never exists while the
battle is still anonymous to its visitor), at most `judge_queue_size` waiting at once. Any
worker labels; each claims a battle by moving its next attempt ahead first, in one conditional
UPDATE, as the webhook sender claims deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.integrity import counted_or_duplicate
from arena.judge.verdict import Verdict
from arena.leaderboard.battles_source import BattleText, battle_text
from arena.models import Battle, JudgeLabel, Message, Vote, utcnow

# Attempts in all before a battle is left unlabelled (`arena judge relabel` tries again).
MAX_ATTEMPTS: Final = 8
MAX_BACKOFF_SECONDS: Final = 6 * 3600
_ERROR_CHARS: Final = 300


def waiting() -> ColumnElement[bool]:
    """Rows still to be labelled (new, failed but not given up, or asked to be relabelled)."""
    return and_(
        or_(JudgeLabel.labelled_at.is_(None), JudgeLabel.stale.is_(True)),
        JudgeLabel.given_up_at.is_(None),
    )


def refused(battle_id: Any) -> ColumnElement[bool]:
    """The condition that the judge found a refusal among the answers of the battle `battle_id`
    (a column or a value): for views that leave such battles out. Not labelled: false."""
    return (
        select(JudgeLabel.battle_id)
        .where(JudgeLabel.battle_id == battle_id, JudgeLabel.refusal.is_(True))
        .exists()
    )


async def latest_vote_id(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.max(Vote.id))) or 0)


async def waiting_count(session: AsyncSession) -> int:
    return int(
        await session.scalar(select(func.count()).select_from(JudgeLabel).where(waiting())) or 0
    )


def _unqueued() -> Any:
    """Battle ids of votes a table may rate (counted, or held back as duplicate prompts only)
    not in the queue yet (nor labelled), oldest vote first."""
    return (
        select(Battle.id)
        .join(Vote, Vote.battle_id == Battle.id)
        .outerjoin(JudgeLabel, JudgeLabel.battle_id == Battle.id)
        .where(
            counted_or_duplicate(),
            Battle.erased_at.is_(None),
            JudgeLabel.battle_id.is_(None),
        )
        .order_by(Vote.id)
    )


async def any_unqueued(session: AsyncSession) -> bool:
    return (await session.scalar(_unqueued().limit(1))) is not None


async def enqueue_voted(session: AsyncSession, *, queue_size: int) -> bool:
    """Queue the oldest counted votes' battles not queued yet, up to `queue_size` waiting;
    whether every such battle is queued now."""
    room = queue_size - await waiting_count(session)
    if room <= 0:
        return False
    now = utcnow()
    new = (
        _unqueued()
        .add_columns(
            literal(now, JudgeLabel.queued_at.type),
            literal(now, JudgeLabel.next_attempt_at.type),
        )
        .limit(room)
    )
    dialect = session.get_bind().dialect.name
    upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    added = await session.scalars(
        upsert(JudgeLabel)
        .from_select(["battle_id", "queued_at", "next_attempt_at"], new)
        # Another worker queued the same battle meanwhile: it stays queued once.
        .on_conflict_do_nothing(index_elements=[JudgeLabel.battle_id])
        # The rows added (rowcount is not kept for this INSERT on PostgreSQL's driver).
        .returning(JudgeLabel.battle_id)
    )
    return len(added.all()) < room


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(waiting(), JudgeLabel.next_attempt_at <= now)


async def any_due(session: AsyncSession) -> bool:
    """Whether a battle waits for the judge now (a read, before a rate slot is spent)."""
    found = await session.scalar(select(JudgeLabel.battle_id).where(_due(utcnow())).limit(1))
    return found is not None


@dataclass(frozen=True)
class Claimed:
    battle_id: str
    attempts: int


async def claim_battle(session: AsyncSession, *, hold: timedelta) -> Claimed | None:
    """The battle due longest, now this caller's for `hold` (its next attempt moved ahead)."""
    now = utcnow()
    due = _due(now)
    oldest = (
        select(JudgeLabel.battle_id)
        .where(due)
        .order_by(JudgeLabel.next_attempt_at, JudgeLabel.battle_id)
        .limit(1)
    )
    # `due` again on the row itself: of two workers that chose it, the second finds it taken.
    row = (
        await session.execute(
            update(JudgeLabel)
            .where(JudgeLabel.battle_id.in_(oldest.scalar_subquery()), due)
            .values(next_attempt_at=now + hold)
            .returning(JudgeLabel.battle_id, JudgeLabel.attempts)
        )
    ).first()
    return None if row is None else Claimed(str(row[0]), int(row[1]))


async def first_turn_text(session: AsyncSession, battle_id: str) -> BattleText | None:
    """The first prompt and the first answers of a battle; None once its texts are erased."""
    battle = await session.get(Battle, battle_id)
    if battle is None or battle.erased_at is not None:
        return None
    messages = await session.scalars(
        select(Message).where(Message.battle_id == battle_id, Message.turn == 1)
    )
    return battle_text(list(messages))


async def store_verdict(
    session: AsyncSession, claimed: Claimed, verdict: Verdict, *, judge_model: str, version: str
) -> None:
    await session.execute(
        update(JudgeLabel)
        .where(JudgeLabel.battle_id == claimed.battle_id)
        .values(
            labelled_at=utcnow(),
            stale=False,
            attempts=claimed.attempts + 1,
            last_error=None,
            judge_model=judge_model[:200],
            prompt_version=version,
            criteria=list(verdict.criteria),
            hard_score=verdict.hard_score,
            math=verdict.math,
            instruction_following=verdict.instruction_following,
            creative_writing=verdict.creative_writing,
            refusal=verdict.refusal,
        )
    )


def backoff(attempts: int, first_retry_seconds: float) -> timedelta:
    """The wait after the `attempts`-th failure: doubling from the first, at most six hours."""
    return timedelta(seconds=min(first_retry_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS))


async def store_failure(
    session: AsyncSession,
    claimed: Claimed,
    error: str,
    *,
    first_retry_seconds: float,
    give_up: bool = False,
) -> None:
    """Record a failed attempt: retried after the backoff, or given up after MAX_ATTEMPTS."""
    now = utcnow()
    attempts = claimed.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_error": error[:_ERROR_CHARS]}
    if give_up or attempts >= MAX_ATTEMPTS:
        values["given_up_at"] = now
    else:
        values["next_attempt_at"] = now + backoff(attempts, first_retry_seconds)
    await session.execute(
        update(JudgeLabel).where(JudgeLabel.battle_id == claimed.battle_id).values(**values)
    )


async def relabel(session: AsyncSession, *, since: datetime | None) -> int:
    """Queue every labelled or given-up battle (voted at or after `since`) to be labelled again
    by the judge now in effect; its current labels stay until the new ones arrive. How many."""
    query = update(JudgeLabel).where(
        or_(JudgeLabel.labelled_at.is_not(None), JudgeLabel.given_up_at.is_not(None))
    )
    if since is not None:
        voted_since = select(Vote.battle_id).where(Vote.created_at >= since)
        query = query.where(JudgeLabel.battle_id.in_(voted_since.scalar_subquery()))
    changed = await session.execute(
        query.values(
            stale=JudgeLabel.labelled_at.is_not(None),
            given_up_at=None,
            attempts=0,
            last_error=None,
            next_attempt_at=utcnow(),
        )
    )
    return int(changed.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class LabelCounts:
    labelled: int
    waiting: int
    given_up: int
    by_judge: dict[str, int]


async def label_counts(session: AsyncSession) -> LabelCounts:
    """How many battles are labelled (by which judge and prompt), waiting, given up."""
    labelled = JudgeLabel.labelled_at.is_not(None)
    by_judge = {
        f"{model} / prompt {version}": int(n)
        for model, version, n in await session.execute(
            select(JudgeLabel.judge_model, JudgeLabel.prompt_version, func.count())
            .where(labelled)
            .group_by(JudgeLabel.judge_model, JudgeLabel.prompt_version)
        )
    }

    async def count(condition: ColumnElement[bool]) -> int:
        found = await session.scalar(select(func.count()).select_from(JudgeLabel).where(condition))
        return int(found or 0)

    return LabelCounts(
        labelled=await count(labelled),
        waiting=await count(waiting()),
        given_up=await count(JudgeLabel.given_up_at.is_not(None)),
        by_judge=by_judge,
    )
