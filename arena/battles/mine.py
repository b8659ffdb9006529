"""The visitor's own battles, newest first, as the My battles list shows them."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from arena.battles.schemas import MyBattle, Reveal, RevealedModel
from arena.battles.settled import closed_for_votes
from arena.models import Battle, BattleMode, Message, Model, Side, Vote, utcnow
from arena.visitors import Visitor

# Characters of the first prompt each entry shows: enough to recognise the battle.
PROMPT_START_CHARS: Final = 200
MAX_LISTED: Final = 200


async def my_battles(
    session: AsyncSession, *, visitor: Visitor, window: timedelta, limit: int
) -> list[MyBattle]:
    model_a, model_b = aliased(Model), aliased(Model)
    rows = await session.execute(
        select(
            Battle.id,
            Battle.created_at,
            Battle.status,
            Battle.erased_at,
            Battle.mode,
            func.substr(Message.content, 1, PROMPT_START_CHARS),
            Vote.winner,
            model_a.name,
            model_a.organization,
            model_b.name,
            model_b.organization,
        )
        .outerjoin(
            Message,
            and_(Message.battle_id == Battle.id, Message.turn == 1, Message.side == Side.user),
        )
        .outerjoin(Vote, Vote.battle_id == Battle.id)
        .join(model_a, model_a.id == Battle.model_a_id)
        .join(model_b, model_b.id == Battle.model_b_id)
        .where(Battle.session_hash == visitor.session_hash)
        .order_by(Battle.created_at.desc(), Battle.id)
        .limit(limit)
    )
    now = utcnow()
    listed = []
    for battle_id, created_at, status, erased_at, mode, prompt, winner, *names in rows:
        name_a, org_a, name_b, org_b = names
        listed.append(
            MyBattle(
                battle_id=battle_id,
                created_at=created_at,
                prompt=prompt or "",
                status=status,
                closed=closed_for_votes(created_at, now=now, window=window),
                winner=winner,
                # Named only once voted (the vote's answer named them to this visitor already),
                # or from the start in a battle whose models the visitor chose.
                models=Reveal(
                    model_a=RevealedModel(name=name_a, organization=org_a),
                    model_b=RevealedModel(name=name_b, organization=org_b),
                )
                if winner is not None or mode == BattleMode.named
                else None,
                erased_at=erased_at,
            )
        )
    return listed
