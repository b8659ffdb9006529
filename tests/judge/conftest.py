"""Judge fixtures: the labeller run against the fake upstream as judge, seeded votes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.config import Settings
from arena.db import make_async_engine, make_sessionmaker
from arena.judge.worker import JudgeWorker
from arena.models import JudgeLabel
from arena.registry.keys import KeyRing
from arena.upstream.http import UpstreamClient
from tests.conftest import make_settings, run_db

MODELS = ("alpha-large", "beta-chat")
# One key for every Settings of a test: the judge's key, encrypted by one, is read by another.
SECRET_KEY = Fernet.generate_key().decode()


def judge_settings(
    database_url: str, data_dir: Path, judge_model: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "judge_model": judge_model,
        "judge_requests_per_minute": 60_000.0,
        "judge_timeout": 2.0,
        "judge_retry_seconds": 30.0,
        "secret_key": SECRET_KEY,
        **overrides,
    }
    return make_settings(database_url, data_dir, **values)


async def _label_due(settings: Settings, workers: int, rounds: int) -> int:
    engine = make_async_engine(settings.database_url)
    sessionmaker = make_sessionmaker(engine)
    started = 0
    try:
        async with UpstreamClient() as client:
            keys = KeyRing.from_settings(settings)
            labellers = [JudgeWorker(settings, sessionmaker, client, keys) for _ in range(workers)]
            for _ in range(rounds):
                went = await asyncio.gather(*(w.start_one() for w in labellers))
                started += sum(went)
                if not any(went):
                    # Nothing due now; once the requests in flight end, room may be made.
                    in_flight = [task for w in labellers for task in w.tasks]
                    if not in_flight:
                        break
                    await asyncio.gather(*in_flight)
    finally:
        await engine.dispose()
    return started


def label_due(settings: Settings, *, workers: int = 1, rounds: int = 1000) -> int:
    """Run labellers until nothing is due; how many requests they started."""
    return asyncio.run(_label_due(settings, workers, rounds))


def stored_labels(settings: Settings) -> list[JudgeLabel]:
    async def work(session: AsyncSession) -> Sequence[JudgeLabel]:
        rows = (await session.scalars(select(JudgeLabel))).all()
        session.expunge_all()
        return rows

    return list(run_db(settings, work))
