"""A thousand battles against broken endpoints: each ends cleanly, and the server does not grow."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.arena_process import ArenaProcess
from tests.conftest import add_model, make_settings
from tests.fake_upstream import FakeUpstream

FAULTY = [
    "hang-after-headers",
    "drip:0.05",
    "invalid-utf8",
    "huge:300000",
    "midstream-close",
    "html",
    "error429",
    "garbage",
]
CONCURRENCY = 20


async def _battles(url: str, count: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def visitor() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while not queue.empty():
                i = queue.get_nowait()
                created = await client.post("/api/battles", json={"prompt": f"question {i}"})
                assert created.status_code == 201, created.text
                battle_id = created.json()["battle_id"]
                async with client.stream("GET", f"/api/battles/{battle_id}/stream") as stream:
                    lines = [line async for line in stream.aiter_lines() if line]
                end = lines[-1]
                outcome = "failed" if '"status":"failed"' in end else "ready"
                assert outcome == "failed" or '"status":"ready"' in end, end
                outcomes[outcome] += 1
                if outcome == "failed" and i % 10 == 0:
                    vote = await client.post(
                        f"/api/battles/{battle_id}/vote", json={"winner": "model_a"}
                    )
                    assert vote.status_code == 409
                    outcomes["refused votes"] += 1

    await asyncio.gather(*(visitor() for _ in range(CONCURRENCY)))
    return outcomes


@pytest.mark.slow
def test_memory_stays_flat_across_a_thousand_broken_battles(
    sqlite_template: Path, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    database = tmp_path / "arena.db"
    shutil.copyfile(sqlite_template, database)
    settings = make_settings(
        f"sqlite:///{database}",
        tmp_path,
        first_token_timeout=0.3,
        idle_timeout=0.3,
        total_timeout=2.0,
        battle_rate_limit="",
        battle_ip_rate_limit="",
        circuit_breaker_failures=0,
        rigging_scan_seconds=0,
    )
    for n, upstream_model in enumerate(["normal", *FAULTY]):
        add_model(settings, f"model-{n}", fake_upstream.base_url, upstream_model)
    arena = ArenaProcess(settings, tmp_path / "arena.log").start()
    try:
        warm = asyncio.run(_battles(arena.url, 200))
        before = arena.rss()
        measured = asyncio.run(_battles(arena.url, 1000))
        after = arena.rss()
        with httpx.Client(base_url=arena.url) as client:
            assert client.get("/healthz").status_code == 200
    finally:
        arena.stop()
    assert warm["failed"] + warm["ready"] == 200
    assert measured["failed"] + measured["ready"] == 1000
    # Only one model is healthy, so every pair has a broken side: all 1,000 battles fail.
    assert measured["failed"] == 1000 and measured["refused votes"] == 100
    growth_mb = (after - before) / 2**20
    assert growth_mb < 15, (
        f"RSS grew by {growth_mb:.1f} MB over 1,000 battles ({before / 2**20:.0f} MB before)"
    )
