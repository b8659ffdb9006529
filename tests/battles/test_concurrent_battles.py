"""Many battles between the same two models at once, the pair on both sides: none may fail.

Storing a turn once wrote both models' rows in side order, so on PostgreSQL two battles with the
pair on opposite sides deadlocked and one of them failed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Battle, BattleStatus, Message, Model, Side
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream

BATTLES = 40


async def _battle(client: httpx.AsyncClient, n: int) -> tuple[str, str]:
    created = await client.post("/api/battles", json={"prompt": f"question {n}"})
    assert created.status_code == 201, created.text
    battle_id = str(created.json()["battle_id"])
    end = ""
    async with client.stream("GET", f"/api/battles/{battle_id}/stream") as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "end":
                    end = event["status"]
    return battle_id, end


async def _many_battles(url: str) -> list[tuple[str, str]]:
    # One visitor per battle, all started before any finishes: the turns end together.
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for _ in range(BATTLES)]
    try:
        return await asyncio.gather(*(_battle(c, n) for n, c in enumerate(clients)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


@pytest.mark.parametrize("b_model", ["normal", "error500"])
def test_same_pair_on_both_sides_at_once(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream, b_model: str
) -> None:
    arena = arena_factory(battle_rate_limit="", battle_ip_rate_limit="", circuit_breaker_failures=0)
    first = arena.add_model("first-model", fake_upstream.base_url, "normal")
    second = arena.add_model("second-model", fake_upstream.base_url, b_model)

    results = asyncio.run(_many_battles(arena.url))

    async def stored(session: AsyncSession) -> tuple[dict[str, BattleStatus], int, set[int]]:
        statuses = dict((await session.execute(select(Battle.id, Battle.status))).all())
        answers = await session.scalar(
            select(func.count()).select_from(Message).where(Message.side != Side.user)
        )
        sides = {b.model_a_id for b in await session.scalars(select(Battle))}
        return statuses, int(answers or 0), sides

    statuses, answers, first_sides = arena.db(stored)
    assert first_sides == {first, second}, "the pair never sat on both sides"
    # Every turn was stored: a deadlock rolls back the transaction that stores the answers.
    assert answers == 2 * BATTLES
    if b_model == "normal":
        assert [end for _, end in results] == ["ready"] * BATTLES
        assert set(statuses.values()) == {BattleStatus.ready}
    else:
        assert [end for _, end in results] == ["failed"] * BATTLES
        assert set(statuses.values()) == {BattleStatus.failed}

        async def failures(session: AsyncSession) -> dict[int, int]:
            return dict((await session.execute(select(Model.id, Model.consecutive_failures))).all())

        assert arena.db(failures) == {first: 0, second: BATTLES}
