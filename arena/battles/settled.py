"""When a battle is over: the one definition every public and owner figure counts battles by.

A battle's pair is drawn and stored the moment it is created, but the visitor may learn the
names only from the vote's answer (DESIGN section 5). A figure that moved when a battle started
or answered (a model's realised share, an owner's battle or answer count, its latency
percentiles, its run of failures) would name the pair to a visitor who read it before and
after, in time to vote for or against a model they now know. So every such figure counts
settled battles only:

- `voted`: the vote is cast and its answer named the pair to the one who cast it;
- `failed`: a side failed, and a failed battle never takes a vote;
- any status, once the battle is older than the vote window (`vote_window_seconds`): from then
  on its vote and its follow-up turns are refused (`votes.cast_vote`, `turns.add_turn`), so a
  battle left `ready`, or `pending` and `streaming` by a visitor who went away, is over too.

Named battles (the visitor chose the models) are settled the same way, but no sampling figure
counts them (`drawn`): the sampler did not draw their pair.

`pending`, `streaming` and `ready` battles inside the window are open: no figure counts them,
and none of their answers, timings or errors reach an owner, until they settle.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, or_

from arena.config import Settings
from arena.models import Battle, BattleMode, BattleStatus

SETTLED_STATUSES: Final = (BattleStatus.voted, BattleStatus.failed)


def vote_window(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.vote_window_seconds)


def votes_closed_for(now: datetime, window: timedelta) -> datetime:
    """Battles created at or before this moment take no vote or turn any more."""
    return now - window


def settled(*, now: datetime, window: timedelta) -> ColumnElement[bool]:
    """The condition on `Battle` selecting the battles that are over at `now`."""
    return or_(
        Battle.status.in_(SETTLED_STATUSES),
        Battle.created_at <= votes_closed_for(now, window),
    )


def drawn() -> ColumnElement[bool]:
    """The condition on `Battle` selecting the battles whose pair the sampler drew."""
    return Battle.mode == BattleMode.anonymous


def closed_for_votes(created_at: datetime, *, now: datetime, window: timedelta) -> bool:
    return created_at <= votes_closed_for(now, window)
