"""SIGKILL mid-load: every vote the server acknowledged is in the database, counted once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Vote
from tests.arena_process import ArenaProcess, cookie_header, seed_ready_battles
from tests.conftest import add_model, make_settings, run_db
from tests.fake_upstream import FakeUpstream

BATTLES = 300
CONCURRENCY = 30
KILL_AFTER_ACKS = 100


async def _vote(client: httpx.AsyncClient, battle_id: str, cookie: str) -> int | None:
    try:
        response = await client.post(
            f"/api/battles/{battle_id}/vote",
            json={"winner": "model_a"},
            headers=cookie_header(cookie),
        )
    except httpx.TransportError:
        return None  # the server died with this request in flight
    return response.status_code


async def _drive_and_kill(arena: ArenaProcess, battles: list[tuple[str, str]]) -> set[str]:
    acknowledged: set[str] = set()
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for item in battles:
        queue.put_nowait(item)
    killed = asyncio.Event()

    async def voter(client: httpx.AsyncClient) -> None:
        while not queue.empty() and not killed.is_set():
            battle_id, cookie = queue.get_nowait()
            status = await _vote(client, battle_id, cookie)
            if status == 200:
                acknowledged.add(battle_id)
            elif status is not None:
                raise AssertionError(f"vote on {battle_id} answered {status}")
            if len(acknowledged) >= KILL_AFTER_ACKS and not killed.is_set():
                killed.set()
                # Other voters' requests are still in flight when the process dies.
                await asyncio.to_thread(arena.kill)

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=arena.url, timeout=10, limits=limits) as client:
        await asyncio.gather(*(voter(client) for _ in range(CONCURRENCY)))
    assert killed.is_set(), "the load ended before the kill"
    return acknowledged


@pytest.mark.slow
def test_acknowledged_votes_survive_sigkill(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    settings = make_settings(
        database_url,
        tmp_path,
        vote_rate_limit="",
        vote_ip_rate_limit="",
        rigging_scan_seconds=0,
    )
    model_ids = (
        add_model(settings, "alpha", fake_upstream.base_url, organization="A"),
        add_model(settings, "beta", fake_upstream.base_url, organization="B"),
    )
    battles = seed_ready_battles(settings, model_ids, BATTLES)

    arena = ArenaProcess(settings, tmp_path / "arena.log").start()
    try:
        acknowledged = asyncio.run(_drive_and_kill(arena, battles))
    finally:
        arena.stop()

    async def stored(session: AsyncSession) -> dict[str, tuple[bool, list[str]]]:
        votes = await session.scalars(select(Vote))
        return {v.battle_id: (v.counted, list(v.flags)) for v in votes}

    after_kill = run_db(settings, stored)
    assert len(acknowledged) >= KILL_AFTER_ACKS
    lost = acknowledged - set(after_kill)
    assert not lost, f"{len(lost)} acknowledged votes are missing after SIGKILL"
    assert all(after_kill[b] == (True, []) for b in acknowledged)

    # After a restart, the votes that were never acknowledged can be cast (or are found cast);
    # each battle ends with exactly one counted vote.
    restarted = ArenaProcess(settings, tmp_path / "arena.log").start()
    try:

        async def retry() -> list[int | None]:
            async with httpx.AsyncClient(base_url=restarted.url, timeout=10) as client:
                return await asyncio.gather(
                    *(
                        _vote(client, battle_id, cookie)
                        for battle_id, cookie in battles
                        if battle_id not in acknowledged
                    )
                )

        statuses = asyncio.run(retry())
    finally:
        restarted.stop()
    assert set(statuses) <= {200, 409}
    final = run_db(settings, stored)
    assert len(final) == BATTLES
    assert all(counted and not flags for counted, flags in final.values())
