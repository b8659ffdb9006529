"""Periodic jobs run once a period across every worker of every instance (job_lock.claim_period)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from arena.config import Settings
from arena.db import begin_write, make_async_engine, make_sessionmaker
from arena.job_lock import PeriodClaim, claim_period
from arena.models import utcnow

PERIOD = timedelta(seconds=0.5)


async def _claim(settings: Settings, engine_count: int = 1) -> list[PeriodClaim | None]:
    """`engine_count` workers (an engine each, as separate processes have) claim together."""
    engines = [make_async_engine(settings.database_url) for _ in range(engine_count)]

    async def one(index: int) -> PeriodClaim | None:
        async with make_sessionmaker(engines[index])() as session, session.begin():
            await begin_write(session)
            return await claim_period(session, "job", PERIOD)

    try:
        return list(await asyncio.gather(*(one(i) for i in range(engine_count))))
    finally:
        for engine in engines:
            await engine.dispose()


def test_of_workers_claiming_together_exactly_one_runs(settings: Settings) -> None:
    claims = asyncio.run(_claim(settings, engine_count=4))
    assert sum(claim is not None for claim in claims) == 1
    assert [c for c in claims if c is not None] == [PeriodClaim(previous_start=None)]


def test_the_period_is_taken_again_once_it_is_over(settings: Settings) -> None:
    first_started = utcnow()
    assert asyncio.run(_claim(settings)) == [PeriodClaim(previous_start=None)]
    assert asyncio.run(_claim(settings)) == [None], "claimed twice in one period"
    asyncio.run(asyncio.sleep(PERIOD.total_seconds() + 0.1))
    (again,) = asyncio.run(_claim(settings))
    assert again is not None and again.previous_start is not None
    assert abs((again.previous_start - first_started).total_seconds()) < 0.5


def test_a_claim_rolled_back_leaves_the_period_free(settings: Settings) -> None:
    async def claim_then_fail() -> None:
        engine = make_async_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                await begin_write(session)
                assert await claim_period(session, "job", PERIOD) is not None
                raise RuntimeError("the job failed")
        except RuntimeError:
            pass
        finally:
            await engine.dispose()

    asyncio.run(claim_then_fail())
    assert asyncio.run(_claim(settings)) == [PeriodClaim(previous_start=None)]
