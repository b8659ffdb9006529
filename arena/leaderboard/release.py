"""Which battles' texts are released: the one condition every export of prompts and answers
goes through (docs/release.md).

A battle's texts are released only if its visitor was shown the release notice before the
battle started (`notice_shown_at`, recorded by the server, arena/consent.py) and has not erased
them since. Switching ARENA_RELEASE_CONVERSATIONS on later releases nothing from before: those
visitors were never told."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import ColumnElement, and_, case, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from arena.models import Battle

RELEASED: Final = "released"
# Its visitor deleted it: the vote is exported, the texts are gone.
ERASED: Final = "erased"
# Its visitor was not shown the release notice: the texts are kept, never published.
WITHHELD: Final = "withheld"


def text_released() -> ColumnElement[bool]:
    """The condition on `Battle` of the battles whose texts may be published."""
    return and_(Battle.notice_shown_at.is_not(None), Battle.erased_at.is_(None))


def _text_status() -> ColumnElement[str]:
    return case(
        (Battle.erased_at.is_not(None), ERASED),
        (Battle.notice_shown_at.is_(None), WITHHELD),
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
