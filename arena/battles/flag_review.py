"""The operator's review of a flagged session: confirmed, its votes stay excluded; dismissed,
they count again and the rigging scan leaves the session be. Nothing is deleted either way: the
flag keeps its evidence and gains the decision, its time and the operator's note."""

from __future__ import annotations

from typing import Final, Literal

from sqlalchemy import Text, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.errors import Conflict, NotFound
from arena.models import FlaggedSession, Vote, utcnow

CONFIRMED: Final = "confirmed"
DISMISSED: Final = "dismissed"
Decision = Literal["confirmed", "dismissed"]


async def decide_flag(
    session: AsyncSession, *, session_hash: str, reason: str, decision: Decision, note: str
) -> int:
    """Record the decision on the session's flag for `reason`; the votes it counts again."""
    flags = (
        await session.scalars(
            select(FlaggedSession).where(
                FlaggedSession.session_hash == session_hash, FlaggedSession.reason == reason
            )
        )
    ).all()
    if not flags:
        raise NotFound(f"No session {session_hash!r} is flagged for {reason!r}.")
    decided = next((flag for flag in flags if flag.decision is not None), None)
    if decided is not None:
        raise Conflict(
            f"This flag was {decided.decision} on {decided.decided_at:%Y-%m-%d %H:%M} UTC; "
            "a decision is kept, not changed."
        )
    now = utcnow()
    for flag in flags:
        flag.decision, flag.decided_at, flag.decision_note = decision, now, note
    restored = 0
    if decision == DISMISSED:
        votes = await session.scalars(
            select(Vote).where(
                Vote.session_hash == session_hash,
                cast(Vote.flags, Text).like(f'%"{reason}"%'),
            )
        )
        for vote in votes:
            vote.flags = [flag for flag in vote.flags if flag != reason]
            # A vote counts when nothing else holds it back (a vote-time flag may).
            if not vote.flags:
                vote.counted = True
                restored += 1
    await session.flush()
    return restored
