"""Which battles' texts are released: the one condition every export of prompts and answers
goes through (docs/release.md).

A battle's texts are released only if its visitor was shown the release notice before the
battle started (`notice_shown_at`, recorded by the server, arena/consent.py), has not erased
them since, and no flag in WITHHELD_FLAGS marks the battle: an answer that named its own model
(the identity-leak filter, arena/battles/integrity.py) and a battle whose answers moderation
withheld (arena/moderation.py). Switching ARENA_RELEASE_CONVERSATIONS on later releases
nothing from before: those visitors were never told. What is released is then redacted
(redaction.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import ColumnElement, Text, and_, case, cast, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from arena.battles.integrity import IDENTITY_LEAK
from arena.models import Battle
from arena.moderation import MODERATED

RELEASED: Final = "released"
# Its visitor deleted it: the vote is exported, the texts are gone.
ERASED: Final = "erased"
# Its visitor was not shown the release notice, or a flag withholds it: the texts are kept,
# never published.
WITHHELD: Final = "withheld"

# Battle flags that keep a battle's prompts and answers out of every release.
WITHHELD_FLAGS: Final[tuple[str, ...]] = (IDENTITY_LEAK, MODERATED)


def _flagged(flag: str) -> ColumnElement[bool]:
    # JSON lists are stored as text on SQLite and as json on PostgreSQL; both cast to the same text.
    return cast(Battle.flags, Text).like(f'%"{flag}"%')


def _withheld() -> ColumnElement[bool]:
    return or_(Battle.notice_shown_at.is_(None), *(_flagged(flag) for flag in WITHHELD_FLAGS))


def text_released() -> ColumnElement[bool]:
    """The condition on `Battle` of the battles whose texts may be published."""
    return and_(Battle.erased_at.is_(None), not_(_withheld()))


def _text_status() -> ColumnElement[str]:
    return case(
        (Battle.erased_at.is_not(None), ERASED),
        (_withheld(), WITHHELD),
        else_=RELEASED,
    )


async def text_statuses(
    sessionmaker: async_sessionmaker[AsyncSession], battle_ids: Sequence[str]
) -> dict[str, str]:
    """Whether each battle's texts are released, erased or withheld."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Battle.id, _text_status()).where(Battle.id.in_(list(battle_ids)))
        )
        return {str(battle_id): str(status) for battle_id, status in rows}
