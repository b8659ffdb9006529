"""Erasure: a battle's texts removed at its visitor's request (or the operator's, on theirs).

What goes: every prompt and answer of every turn, the prompts' images (those no other prompt
carries are deleted), and the upstream errors (an endpoint may echo the prompt in one). What
stays: the battle row (pair, times, flags, timings, language and category tags and style
features, worked out from the texts first if not done yet) and its vote, so that
the ratings and every count stay what they were and the vote is still exported as an anonymous
result, marked erased and without text. An erased battle takes no vote, follow-up or stream any
more (its claims and votes check `erased_at`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.style_backfill import fill_styles
from arena.battles.turns import fail_interrupted_turn
from arena.config import Settings
from arena.errors import BattleNotFound, Conflict, NotFound
from arena.images.store import battle_has_images, forget_battle_images
from arena.leaderboard.battles_source import battle_tags, battle_text
from arena.models import Battle, BattleStatus, Message, utcnow
from arena.ratings.categories import estimate_tokens
from arena.visitors import Visitor, salted_hash

# Battle ids a single operator command takes: requests come one e-mail at a time.
MAX_IDS_PER_REQUEST = 1000


class StillStreaming(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "This battle's answers are still arriving; delete it once they have finished "
            "(a few seconds to a few minutes)."
        )


class SessionHasNoBattles(NotFound):
    def __init__(self) -> None:
        super().__init__(
            "No battle was started with that session id. It is the value of the visitor's "
            "arena_session cookie, exactly as their browser shows it."
        )


@dataclass(frozen=True)
class ErasedBattle:
    battle_id: str
    erased_at: datetime
    # False when it had been erased before: erasing again changes nothing
    newly: bool


async def erase_own_battle(
    session: AsyncSession, *, battle_id: str, visitor: Visitor, settings: Settings
) -> ErasedBattle:
    """Erase the visitor's battle. Someone else's battle is answered as one that does not exist
    (404, not 403): a deletion request must not tell whether an id is in use."""
    battle = await session.get(Battle, battle_id, with_for_update=True)
    if battle is None or battle.session_hash != visitor.session_hash:
        raise BattleNotFound()
    return await _erase(session, battle, settings)


async def erase_battles(
    session: AsyncSession, *, battle_ids: Sequence[str], settings: Settings
) -> list[ErasedBattle]:
    """Erase battles by id, for the operator; all or none (an unknown id raises)."""
    if len(battle_ids) > MAX_IDS_PER_REQUEST:
        raise Conflict(
            f"{len(battle_ids)} battle ids in one go is over the limit of "
            f"{MAX_IDS_PER_REQUEST}; split the request"
        )
    erased = []
    for battle_id in dict.fromkeys(battle_ids):
        battle = await session.get(Battle, battle_id, with_for_update=True)
        if battle is None:
            raise NotFound(f"No battle with id {battle_id!r}; nothing was erased. Check the id.")
        erased.append(await _erase(session, battle, settings))
    return erased


async def erase_session_battles(
    session: AsyncSession, *, session_id: str, secret: str, settings: Settings
) -> list[ErasedBattle]:
    """Erase every battle started from one browser session, given its cookie value."""
    session_hash = salted_hash(secret, "session:" + session_id)
    battles = (
        await session.scalars(
            select(Battle)
            .where(Battle.session_hash == session_hash)
            .order_by(Battle.created_at)
            .with_for_update()
        )
    ).all()
    if not battles:
        raise SessionHasNoBattles()
    return [await _erase(session, battle, settings) for battle in battles]


async def _erase(session: AsyncSession, battle: Battle, settings: Settings) -> ErasedBattle:
    if battle.erased_at is not None:
        return ErasedBattle(battle.id, battle.erased_at, newly=False)
    if battle.status == BattleStatus.streaming:
        stale_after = timedelta(seconds=settings.total_timeout + 30)
        started = battle.stream_started_at
        if started is not None and utcnow() - started <= stale_after:
            raise StillStreaming()
        # Its worker died mid-stream: the turn is ended as failed first, as a reload would.
        battle_id, turn = battle.id, battle.turns
        await session.run_sync(
            lambda sync: fail_interrupted_turn(sync.connection(), battle_id=battle_id, turn=turn)
        )
        await session.refresh(battle)
    now = utcnow()
    marks: dict[str, object] = {"erased_at": now}
    if battle.language == "" or battle.prompt_tokens is None:
        # Not tagged or measured by a recompute yet: done now, from the texts while they exist,
        # so that the vote stays in the categories and views it belongs to (the recompute never
        # reads an erased battle's texts).
        messages = await session.scalars(select(Message).where(Message.battle_id == battle.id))
        text = battle_text(messages.all())
        if battle.language == "":
            with_images = await battle_has_images(session, battle_id=battle.id)
            language, tags = battle_tags(text, with_images=with_images)
            marks.update(language=language[:16], category_tags=tags)
        marks["prompt_tokens"] = estimate_tokens(text.prompt)
    if battle.conv_metadata is None and battle.status in (BattleStatus.ready, BattleStatus.voted):
        # Stored before style features were kept and not backfilled yet: worked out now, from
        # the answers while they exist, so that its vote stays in the style-controlled tables.
        battle_id = battle.id
        await session.run_sync(lambda sync: fill_styles(sync, [battle_id]))
    # Guarded as the claims are: a turn claimed since the read is streaming, and is not erased
    # under it.
    marked = await session.execute(
        update(Battle)
        .where(
            Battle.id == battle.id,
            Battle.erased_at.is_(None),
            Battle.status != BattleStatus.streaming,
        )
        .values(marks)
        .execution_options(synchronize_session=False)
    )
    if marked.rowcount != 1:  # type: ignore[attr-defined]
        raise StillStreaming()
    await session.execute(
        update(Message)
        .where(Message.battle_id == battle.id)
        .values(content="", error=None)
        .execution_options(synchronize_session=False)
    )
    await forget_battle_images(session, battle_id=battle.id)
    await session.refresh(battle)
    return ErasedBattle(battle.id, now, newly=True)
