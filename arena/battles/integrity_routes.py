"""Public routes of sampling and vote integrity: planned and realised shares, vote counts."""

from __future__ import annotations

from fastapi import APIRouter, Request

from arena.battles import integrity, sampling_stats
from arena.battles.integrity_schemas import SamplingOut, VoteCountsOut
from arena.db import SessionDep

router = APIRouter(tags=["integrity"])


@router.get("/api/sampling")
async def sampling(request: Request, session: SessionDep) -> SamplingOut:
    """Each model's planned and realised share of battles over the last 7 and 30 days."""
    return await sampling_stats.sampling_report(session, settings=request.app.state.settings)


@router.get("/api/votes/counts")
async def vote_counts(session: SessionDep) -> VoteCountsOut:
    """How many votes count towards the ratings, and how many were excluded, by reason."""
    return integrity.counts_out(await integrity.vote_counts(session))
