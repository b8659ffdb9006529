"""Two `arena serve` instances on one PostgreSQL and one Redis behave as one arena: a battle
started on one is streamed and voted on the other, a second vote is refused on either, the rate
limits are shared, and the recompute and the rigging scan run once across both."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.rigging import SCAN_JOB
from arena.config import Settings
from arena.models import JobLock, RatingSnapshot
from tests.arena_process import ArenaProcess
from tests.conftest import add_model, make_settings, require, run_db
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream

REDIS_URL = os.environ.get("ARENA_TEST_REDIS_URL", "")


@pytest.fixture
def shared_settings(empty_postgres_database: str, tmp_path: Path) -> Settings:
    require(bool(REDIS_URL), "the two-instance test needs ARENA_TEST_REDIS_URL")
    return make_settings(
        empty_postgres_database,
        tmp_path,
        redis_url=REDIS_URL,
        rate_limit_key_prefix=f"two-instances-{os.urandom(4).hex()}",
        battle_rate_limit="3/hour",
        recompute_every_votes=1,
        recompute_every_seconds=1.0,
        rigging_scan_seconds=1.0,
    )


@pytest.fixture
def two_instances(
    shared_settings: Settings, tmp_path: Path, fake_upstream: FakeUpstream
) -> Iterator[tuple[ArenaProcess, ArenaProcess]]:
    add_model(shared_settings, "alpha", fake_upstream.base_url, organization="A")
    add_model(shared_settings, "beta", fake_upstream.base_url, organization="B")
    first = ArenaProcess(shared_settings, tmp_path / "first.log", cli=True)
    second = ArenaProcess(shared_settings, tmp_path / "second.log", cli=True)
    try:
        first.launch(), second.launch()
        first.wait_until_ready(timeout=90), second.wait_until_ready(timeout=90)
        yield first, second
    finally:
        first.stop()
        second.stop()


def _snapshot_runs(settings: Settings) -> int:
    async def work(session: AsyncSession) -> int:
        return int(
            await session.scalar(select(func.count(func.distinct(RatingSnapshot.computed_at)))) or 0
        )

    return run_db(settings, work)


def _scan_claims(settings: Settings) -> str | None:
    async def work(session: AsyncSession) -> str | None:
        return await session.scalar(select(JobLock.holder).where(JobLock.name == SCAN_JOB))

    return run_db(settings, work)


def _until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout} s for {what}")


@pytest.mark.slow
def test_two_instances_share_battles_votes_limits_and_jobs(
    two_instances: tuple[ArenaProcess, ArenaProcess], shared_settings: Settings
) -> None:
    first, second = two_instances
    with httpx.Client(timeout=30) as visitor:  # one browser: its cookie goes to both
        created = visitor.post(f"{first.url}/api/battles", json={"prompt": "Two instances?"})
        assert created.status_code == 201, created.text
        battle_id = created.json()["battle_id"]

        on_second = httpx.Client(base_url=second.url, timeout=30, cookies=visitor.cookies)
        with on_second:
            assert read_stream(on_second, battle_id).end["status"] == "ready"
            vote = on_second.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
            assert vote.status_code == 200, vote.text
            assert {vote.json()["model_a"]["name"], vote.json()["model_b"]["name"]} == {
                "alpha",
                "beta",
            }
        for instance in (first, second):
            again = visitor.post(
                f"{instance.url}/api/battles/{battle_id}/vote", json={"winner": "model_b"}
            )
            assert again.status_code == 409, again.text

        # The session's battle limit is 3 an hour, counted in Redis whichever instance serves.
        for instance in (second, first):
            more = visitor.post(f"{instance.url}/api/battles", json={"prompt": "More?"})
            assert more.status_code == 201, more.text
        refused = visitor.post(f"{second.url}/api/battles", json={"prompt": "One too many?"})
        assert refused.status_code == 429, refused.text

    # One counted vote: both instances see it due, one recomputes, the other stands down.
    # A fresh worker process imports the ratings code first: slow on a busy machine.
    _until(lambda: _snapshot_runs(shared_settings) >= 1, 180, "a recompute")
    time.sleep(4)  # several polls of both schedulers
    assert _snapshot_runs(shared_settings) == 1

    # The rigging scan's period is claimed, again and again, by whichever instance wakes first.
    _until(lambda: _scan_claims(shared_settings) is not None, 10, "a rigging scan")
    holder = _scan_claims(shared_settings)
    _until(lambda: _scan_claims(shared_settings) != holder, 10, "the next period's scan")
