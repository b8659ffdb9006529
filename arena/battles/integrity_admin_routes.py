"""The operator's review of vote integrity: flagged sessions, excluded votes, a scan on demand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from arena.audit import ADMIN_API_ACTOR, record_action
from arena.battles import integrity, rigging
from arena.battles.integrity_schemas import FlagsOut, ScanOut
from arena.db import SessionDep
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
async def rigging_scan(request: Request, session: SessionDep) -> ScanOut:
    """Test every session against the latest ratings now, rather than at the next interval."""
    outcome = await rigging.scan_sessions(
        request.app.state.sessionmaker, settings=request.app.state.settings
    )
    record_action(session, actor=ADMIN_API_ACTOR, action="rigging.scan")
    await session.commit()
    return ScanOut.model_validate(outcome)
