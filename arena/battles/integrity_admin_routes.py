"""The operator's review of vote integrity: flagged sessions, excluded votes, a scan on demand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from arena.api_input import InputSchema
from arena.audit import ADMIN_API_ACTOR, FLAG_ACTIONS, record_action
from arena.battles import flag_review, integrity, rigging
from arena.battles.flag_review import Decision
from arena.battles.integrity_schemas import FlagsOut, ScanOut
from arena.db import SessionDep, begin_write
from arena.registry.auth import require_admin

router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.get("/flags")
async def flags(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> FlagsOut:
    """Flagged sessions and excluded votes with their reasons, newest first."""
    return await integrity.flag_report(session, limit=limit, before_id=before_id)


@router.post("/rigging-scan")
async def rigging_scan(request: Request) -> ScanOut:
    """Test every session against the latest ratings now, rather than at the next interval."""
    sessionmaker = request.app.state.sessionmaker
    # The scan opens its own transactions (a read, then a short write): a request session
    # holding SQLite's write lock meanwhile would lock it out.
    outcome = await rigging.scan_sessions(sessionmaker, settings=request.app.state.settings)
    async with sessionmaker() as session, session.begin():
        await begin_write(session)
        record_action(session, actor=ADMIN_API_ACTOR, action="rigging.scan")
    return ScanOut.model_validate(outcome)


class FlagDecisionIn(InputSchema):
    session_hash: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=64)
    decision: Decision
    note: str = Field(default="", max_length=500)


class FlagDecisionOut(BaseModel):
    votes_restored: int


@router.post("/flags/decision")
async def decide(body: FlagDecisionIn, session: SessionDep) -> FlagDecisionOut:
    """Confirm a flagged session (its votes stay excluded) or dismiss it (they count again)."""
    restored = await flag_review.decide_flag(
        session,
        session_hash=body.session_hash,
        reason=body.reason,
        decision=body.decision,
        note=body.note,
    )
    record_action(
        session,
        actor=ADMIN_API_ACTOR,
        action=FLAG_ACTIONS[body.decision],
        target=f"{body.reason} {body.session_hash}",
        reason=body.note,
    )
    await session.commit()
    return FlagDecisionOut(votes_restored=restored)
