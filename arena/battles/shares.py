"""Published battles: a voted battle its visitor chose to show at an unguessable address, and
took back when they like. What is shown carries no session data: no battle id, no hashes."""

from __future__ import annotations

import secrets

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.schemas import Reveal, RevealedModel, SharedBattle, SharedMessage
from arena.battles.views import owned_battle
from arena.errors import BattleErased, Conflict, NotFound
from arena.models import Battle, BattleStatus, Message, Model, Share, Vote
from arena.visitors import Visitor


class SharedBattleNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__(
            "No published battle has this address: its visitor took it back, deleted it, or "
            "the address is mistyped."
        )


async def publish(session: AsyncSession, *, battle_id: str, visitor: Visitor) -> str:
    """The battle's slug, made on its first publication (the same address ever after, until
    it is unpublished). Only a voted battle: before the vote its models are not to be named."""
    battle = await owned_battle(session, battle_id, visitor)
    if battle.erased_at is not None:
        raise BattleErased()
    if battle.status != BattleStatus.voted:
        raise Conflict("Vote first: a battle can be shared once you have voted on it.")
    slug = await session.scalar(select(Share.slug).where(Share.battle_id == battle.id))
    if slug is None:
        # 256 bits: the address is the only key to a published battle.
        slug = secrets.token_urlsafe(32)
        session.add(Share(battle_id=battle.id, slug=slug))
        await session.flush()
    return slug


async def unpublish(session: AsyncSession, *, battle_id: str, visitor: Visitor) -> None:
    """Take the battle back: its address stops answering; publishing again makes a new one."""
    battle = await owned_battle(session, battle_id, visitor)
    await session.execute(delete(Share).where(Share.battle_id == battle.id))


async def shared_battle(session: AsyncSession, *, slug: str) -> SharedBattle:
    found = (
        await session.execute(
            select(Share.published_at, Battle, Vote.winner)
            .join(Battle, Battle.id == Share.battle_id)
            .join(Vote, Vote.battle_id == Battle.id)
            .where(Share.slug == slug)
        )
    ).one_or_none()
    if found is None:
        raise SharedBattleNotFound()
    published_at, battle, winner = found
    if battle.erased_at is not None:
        raise SharedBattleNotFound()
    names = {
        model_id: RevealedModel(name=name, organization=organization)
        for model_id, name, organization in await session.execute(
            select(Model.id, Model.name, Model.organization).where(
                Model.id.in_([battle.model_a_id, battle.model_b_id])
            )
        )
    }
    messages = await session.scalars(
        select(Message).where(Message.battle_id == battle.id).order_by(Message.turn, Message.id)
    )
    return SharedBattle(
        published_at=published_at,
        created_at=battle.created_at,
        winner=winner,
        models=Reveal(model_a=names[battle.model_a_id], model_b=names[battle.model_b_id]),
        regenerations=battle.regenerations,
        messages=[
            SharedMessage(turn=m.turn, side=m.side.value, content=m.content) for m in messages
        ],
    )
