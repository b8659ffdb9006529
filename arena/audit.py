"""The audit log: who did what to which model or owner, when and why, for every operator action."""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import StreamingResponse

from arena.models import ModelStatus, OperatorAction, utcnow
from arena.spreadsheet_csv import csv_text

ADMIN_API_ACTOR: Final = "admin"
# The operator's status changes of a model, as actions of the log.
STATUS_ACTIONS: Final = {
    ModelStatus.active: "model.resume",
    ModelStatus.paused: "model.pause",
    ModelStatus.retired: "model.retire",
}
# The operator's review of a flagged session, as actions of the log.
FLAG_ACTIONS: Final = {"confirmed": "flag.confirm", "dismissed": "flag.dismiss"}
CSV_HEADER: Final = ("id", "time", "actor", "action", "target", "reason")
_CSV_BATCH: Final = 1000


def cli_actor() -> str:
    """The CLI's actor: the system user who ran the command (as far as the system says)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid, e.g. in a bare container
        return "cli"


def record_action(
    session: AsyncSession, *, actor: str, action: str, target: str = "", reason: str = ""
) -> OperatorAction:
    """Add the action to the caller's transaction: it is kept exactly when the change is."""
    entry = OperatorAction(
        created_at=utcnow(), actor=actor, action=action, target=target, reason=reason
    )
    session.add(entry)
    return entry


async def recent_actions(
    session: AsyncSession, *, limit: int, before_id: int | None = None
) -> Sequence[OperatorAction]:
    """Newest first; `before_id` pages back from an earlier page's last id."""
    query = select(OperatorAction).order_by(OperatorAction.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(OperatorAction.id < before_id)
    return (await session.scalars(query)).all()


def _csv_row(entry: OperatorAction) -> tuple[int, str, str, str, str, str]:
    created: datetime = entry.created_at
    return (entry.id, created.isoformat(), entry.actor, entry.action, entry.target, entry.reason)


async def actions_csv(session: AsyncSession) -> AsyncIterator[bytes]:
    """The whole log, oldest first, as CSV a batch at a time (text cells neutralised)."""
    yield csv_text([CSV_HEADER]).encode()
    after = 0
    while True:
        batch = (
            await session.scalars(
                select(OperatorAction)
                .where(OperatorAction.id > after)
                .order_by(OperatorAction.id)
                .limit(_CSV_BATCH)
            )
        ).all()
        if not batch:
            return
        yield csv_text([_csv_row(entry) for entry in batch]).encode()
        after = batch[-1].id


def actions_csv_response(sessionmaker: async_sessionmaker[AsyncSession]) -> StreamingResponse:
    """The whole log as a CSV download, oldest first."""

    async def rows() -> AsyncIterator[bytes]:
        # A session of its own: a streamed answer outlives the request's.
        async with sessionmaker() as session:
            async for chunk in actions_csv(session):
                yield chunk

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="arena-audit.csv"'},
    )
