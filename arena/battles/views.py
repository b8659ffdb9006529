"""What a visitor reads of a battle (its view, the replay of a turn), through an AsyncSession of
the request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.schemas import BattleOut, MessageOut, Reveal, RevealedModel
from arena.battles.settled import closed_for_votes
from arena.battles.turns import NEUTRAL_ERROR, check_owned, fail_interrupted_turn
from arena.config import Settings
from arena.errors import BattleErased, BattleNotFound, Conflict
from arena.models import Battle, BattleMode, BattleStatus, Message, Model, Share, Side, Vote, utcnow
from arena.moderation import MODERATED, WITHHELD_MESSAGE
from arena.visitors import Visitor


class TurnStreamingElsewhere(Conflict):
    """The turn is being relayed by a request this worker does not hold (another worker)."""

    def __init__(self) -> None:
        super().__init__("This battle is already streaming in another tab or request.")


async def owned_battle(session: AsyncSession, battle_id: str, visitor: Visitor) -> Battle:
    battle = await session.get(Battle, battle_id)
    if battle is None:
        raise BattleNotFound()
    check_owned(battle.session_hash, visitor)
    return battle


@dataclass(frozen=True)
class PastTurn:
    """A turn that already streamed (or never will): what a reload replays."""

    messages: list[Message]
    status: BattleStatus
    # Its answers were withheld by moderation: replayed as such, never as text.
    withheld: bool = False


async def turn_to_replay(
    session: AsyncSession, *, battle_id: str, visitor: Visitor, settings: Settings
) -> PastTurn:
    """The turn to replay when none could be claimed: already streamed (its stored answers), or
    raise why not (not found, not the visitor's, streaming elsewhere). In a write transaction: a
    turn whose worker died is ended here."""
    battle = await owned_battle(session, battle_id, visitor)
    if battle.erased_at is not None:
        raise BattleErased()
    if battle.status == BattleStatus.pending:  # claimed and given back in between: rare
        raise Conflict("This battle is already streaming in another tab or request.")
    if battle.status == BattleStatus.streaming and battle.stream_started_at is not None:
        stale_after = timedelta(seconds=settings.total_timeout + 30)
        if utcnow() - battle.stream_started_at <= stale_after:
            raise TurnStreamingElsewhere()
        # The worker streaming it died and no worker started since (which would have settled
        # it, see arena/workers.py): end the turn as failed rather than hang forever.
        turn = battle.turns
        await session.run_sync(
            lambda sync: fail_interrupted_turn(sync.connection(), battle_id=battle_id, turn=turn)
        )
        await session.refresh(battle)
    return PastTurn(
        await stored_turn(session, battle=battle), battle.status, withheld=_withheld(battle)
    )


def _withheld(battle: Battle) -> bool:
    return MODERATED in battle.flags


async def is_streaming(session: AsyncSession, *, battle_id: str) -> bool:
    streaming = await session.scalar(
        select(Battle.id).where(Battle.id == battle_id, Battle.status == BattleStatus.streaming)
    )
    return streaming is not None


async def battle_view(
    session: AsyncSession, *, battle_id: str, visitor: Visitor, window: timedelta
) -> BattleOut:
    """The visitor's battle as its page shows it; `window` is how long it takes a vote."""
    battle = await owned_battle(session, battle_id, visitor)
    messages = (
        await session.scalars(
            select(Message).where(Message.battle_id == battle.id).order_by(Message.turn, Message.id)
        )
    ).all()
    vote = await session.scalar(select(Vote).where(Vote.battle_id == battle.id))
    # A battle ends with the turn whose answers moderation withheld: the latest.
    withheld_turn = battle.turns if _withheld(battle) else None
    # A named battle's visitor chose the models: their names are no secret to keep.
    shown = vote is not None or battle.mode == BattleMode.named
    slug = await session.scalar(select(Share.slug).where(Share.battle_id == battle.id))
    return BattleOut(
        battle_id=battle.id,
        mode=battle.mode,
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
            if m.turn != withheld_turn or m.side == Side.user
            else MessageOut(turn=m.turn, side=m.side.value, content="", error=WITHHELD_MESSAGE)
            for m in messages
        ],
        winner=vote.winner if vote else None,
        models=await _reveal(session, battle) if shown else None,
        closed=closed_for_votes(battle.created_at, now=utcnow(), window=window),
        erased_at=battle.erased_at,
        regenerations=battle.regenerations,
        share_path=f"/shared/{slug}" if slug is not None else None,
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
