"""The realised share of battles per model over the last 7 and 30 days, beside the planned share.

The realised share is what the sampler actually did, over settled battles only (settled.py):
of the battles started in the window that are over by now (voted, failed, or past their vote
window), the fraction of their model seats (two per battle) that went to the model. A battle
still open counts nowhere, so nothing here moves when a battle starts or answers; it joins
the figures when its vote is cast, when it fails, or when its vote window closes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Integer, and_, case, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.integrity_schemas import ModelSamplingOut, PairSamplingOut, SamplingOut
from arena.battles.sampling import current_plan
from arena.battles.settled import drawn, settled, vote_window
from arena.config import Settings
from arena.models import Battle, Model, ModelStatus, utcnow

WINDOWS_DAYS: Final = (7, 30)


async def sampling_report(
    session: AsyncSession, *, settings: Settings, now: datetime | None = None
) -> SamplingOut:
    """Every model that was ever approved (paused and retired ones too, with their dates)."""
    now = now or utcnow()
    week_ago, month_ago = now - timedelta(days=7), now - timedelta(days=30)
    over = and_(settled(now=now, window=vote_window(settings)), drawn())
    recent = select(Battle.model_a_id, Battle.model_b_id, Battle.created_at).where(
        Battle.created_at >= month_ago, over
    )
    recent_sub = recent.subquery()
    slots = union_all(
        select(recent_sub.c.model_a_id.label("model_id"), recent_sub.c.created_at),
        select(recent_sub.c.model_b_id.label("model_id"), recent_sub.c.created_at),
    ).subquery()
    counts = {
        model_id: (int(week or 0), int(month or 0))
        for model_id, week, month in await session.execute(
            select(
                slots.c.model_id,
                func.sum(case((slots.c.created_at >= week_ago, 1), else_=0).cast(Integer)),
                func.count(),
            ).group_by(slots.c.model_id)
        )
    }
    battles = {
        days: int(
            await session.scalar(
                select(func.count())
                .select_from(Battle)
                .where(Battle.created_at >= now - timedelta(days=days), over)
            )
            or 0
        )
        for days in WINDOWS_DAYS
    }
    plan = await current_plan(session, settings=settings)
    candidates = plan.candidates
    planned = dict(zip([c.model_id for c in candidates], plan.model_shares(), strict=True))
    pair_shares = plan.pair_shares()
    pair_gain = plan.pair_gains()
    pairs = [
        PairSamplingOut(
            model_a=candidates[int(i)].name,
            model_b=candidates[int(j)].name,
            planned_share=float(share),
            gain=None if gain is None else float(gain),
        )
        for i, j, share, gain in zip(plan.lo, plan.hi, pair_shares, pair_gain, strict=True)
    ]
    boosted = {c.model_id for c in candidates if c.boosted}
    models = (
        await session.scalars(
            select(Model)
            .where((Model.status != ModelStatus.pending) | Model.id.in_(list(counts)))
            .order_by(Model.name)
        )
    ).all()
    rows = []
    for model in models:
        week, month = counts.get(model.id, (0, 0))
        rows.append(
            ModelSamplingOut(
                name=model.name,
                organization=model.organization,
                supports_images=model.supports_images,
                status=model.status,
                sampling_weight=model.sampling_weight,
                boosted=model.id in boosted,
                expected_share=planned.get(model.id),
                battles_7d=week,
                share_7d=week / (2 * battles[7]) if battles[7] else None,
                battles_30d=month,
                share_30d=month / (2 * battles[30]) if battles[30] else None,
                activated_at=model.activated_at,
                paused_at=model.paused_at,
                retired_at=model.retired_at,
            )
        )
    return SamplingOut(
        computed_at=now,
        battles_7d=battles[7],
        battles_30d=battles[30],
        new_model_vote_target=settings.new_model_vote_target,
        new_model_boost=settings.new_model_boost,
        mode=plan.mode,
        floor=plan.floor,
        gains_from=plan.gains_from,
        models=rows,
        pairs=pairs,
    )
