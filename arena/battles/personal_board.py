"""The visitor's own leaderboard: their counted votes, fitted as the public board is, beside
the public ratings."""

from __future__ import annotations

import asyncio

import pandas as pd
from sqlalchemy import String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from arena.battles.ratings_view import latest_ratings
from arena.battles.schemas import PersonalLeaderboard, PersonalRow
from arena.models import Battle, Model, Vote
from arena.ratings.personal import MIN_PERSONAL_VOTES, PRIOR_TIES, personal_ratings
from arena.visitors import Visitor

METHOD = f"bt with {PRIOR_TIES} virtual tie per pair of models met"


class TooFewVotes(Exception):
    def __init__(self, counted: int) -> None:
        self.counted = counted
        self.needed = MIN_PERSONAL_VOTES - counted
        super().__init__(
            f"Your own leaderboard appears from {MIN_PERSONAL_VOTES} counted votes: you have "
            f"{counted}, {self.needed} more to go. Votes that do not count (too fast, an answer "
            "that named its model, ...) are not in it."
        )


async def counted_votes(session: AsyncSession, *, visitor: Visitor) -> int:
    """How many of this session's votes count: the personal leaderboard needs
    MIN_PERSONAL_VOTES of them."""
    found = await session.scalar(
        select(func.count())
        .select_from(Vote)
        .where(Vote.session_hash == visitor.session_hash, Vote.counted.is_(True))
    )
    return int(found or 0)


async def personal_leaderboard(session: AsyncSession, *, visitor: Visitor) -> PersonalLeaderboard:
    model_a, model_b = aliased(Model), aliased(Model)
    rows = (
        await session.execute(
            select(model_a.name, model_b.name, cast(Vote.winner, String))
            .join(Battle, Battle.id == Vote.battle_id)
            .join(model_a, model_a.id == Battle.model_a_id)
            .join(model_b, model_b.id == Battle.model_b_id)
            .where(Vote.session_hash == visitor.session_hash, Vote.counted.is_(True))
        )
    ).all()
    if len(rows) < MIN_PERSONAL_VOTES:
        raise TooFewVotes(len(rows))
    battles = pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])
    # A fit on a few hundred votes at most, but numpy's work: off the event loop.
    fitted = await asyncio.to_thread(personal_ratings, battles)
    public = await latest_ratings(session)
    return PersonalLeaderboard(
        counted_votes=len(rows),
        method=METHOD,
        models=[
            PersonalRow(
                model=row.model,
                rating=round(row.rating, 1),
                votes=row.votes,
                wins=row.wins,
                losses=row.losses,
                ties=row.ties,
                public_rating=round(public[row.model].rating, 1) if row.model in public else None,
            )
            for row in fitted
        ],
    )
