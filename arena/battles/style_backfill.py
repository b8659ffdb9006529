"""Style features (FastChat's conv_metadata) for battles stored before they were kept, worked out
from their stored answers: by `arena battles backfill-style`, by the recompute for the voted
battles it meets, and by erasure before the texts go."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Engine, Select, bindparam, func, select, update
from sqlalchemy.orm import Session

from arena.battles.integrity import counted_or_duplicate
from arena.models import Battle, BattleStatus, Message, Side, Vote
from arena.ratings.style_control import STYLE_COLUMNS
from arena.ratings.style_features import conv_metadata, style_sums

# Battles whose answers are read and tokenised per transaction: a few seconds of work at most,
# so a backfill beside a running arena holds SQLite's write lock only briefly.
BATCH: Final = 500
# Both sides answered every turn: a ready battle, or one voted on.
_ANSWERED: Final = (BattleStatus.ready, BattleStatus.voted)

_STORE = (
    update(Battle)
    .where(Battle.id == bindparam("styled_id"), Battle.conv_metadata.is_(None))
    .values(
        conv_metadata=bindparam("style"),
        **{column: bindparam(f"styled_{column}") for column in STYLE_COLUMNS},
    )
)


def _missing(rated_only: bool) -> Select[str]:
    query = select(Battle.id).where(
        Battle.conv_metadata.is_(None),
        Battle.status.in_(_ANSWERED),
        # An erased battle's answers are gone: its style cannot be worked out any more.
        Battle.erased_at.is_(None),
    )
    if rated_only:
        query = query.join(Vote, Vote.battle_id == Battle.id).where(counted_or_duplicate())
    return query.order_by(Battle.id)


def unstyled_battle_ids(session: Session, *, rated_only: bool = False) -> list[str]:
    """Answered, unerased battles without style features (only those with a vote a table may
    rate, integrity.counted_or_duplicate, when `rated_only`)."""
    return list(session.scalars(_missing(rated_only)))


def fill_styles(session: Session, battle_ids: Sequence[str]) -> int:
    """Work out and store the style of each of `battle_ids` from its stored answers; flushes,
    never commits. A battle that has one already is left as it is. How many were stored."""
    stored = 0
    for start in range(0, len(battle_ids), BATCH):
        chunk = list(battle_ids[start : start + BATCH])
        answers: dict[str, dict[Side, list[str]]] = {
            battle_id: {Side.a: [], Side.b: []} for battle_id in chunk
        }
        rows = session.execute(
            select(Message.battle_id, Message.side, Message.content)
            .where(Message.battle_id.in_(chunk), Message.side.in_([Side.a, Side.b]))
            .order_by(Message.battle_id, Message.turn, Message.id)
        )
        for battle_id, side, content in rows:
            answers[battle_id][Side(side)].append(content)
        for battle_id, by_side in answers.items():
            style = conv_metadata(by_side[Side.a], by_side[Side.b])
            sums = {f"styled_{column}": n for column, n in style_sums(style).items()}
            result = session.execute(_STORE, {"styled_id": battle_id, "style": style, **sums})
            stored += result.rowcount  # type: ignore[attr-defined]
        session.flush()
    return stored


@dataclass(frozen=True)
class BackfillOutcome:
    stored: int
    # Erased before their style was worked out: left out of the style-controlled tables.
    erased_without_style: int


def backfill_styles(
    engine: Engine,
    *,
    batch: int = BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillOutcome:
    """Fill the style of every answered battle that lacks one, `batch` battles per committed
    transaction (an interrupted run resumes where it stopped). `progress(done, total)` after
    each batch."""
    with Session(engine) as session:
        todo = unstyled_battle_ids(session)
    stored = 0
    for start in range(0, len(todo), batch):
        with Session(engine) as session, session.begin():
            stored += fill_styles(session, todo[start : start + batch])
        if progress is not None:
            progress(min(start + batch, len(todo)), len(todo))
    with Session(engine) as session:
        erased = session.scalar(
            select(func.count())
            .select_from(Battle)
            .where(
                Battle.conv_metadata.is_(None),
                Battle.status.in_(_ANSWERED),
                Battle.erased_at.is_not(None),
            )
        )
    return BackfillOutcome(stored=stored, erased_without_style=int(erased or 0))
