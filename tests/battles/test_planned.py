"""First turns planned at a battle's creation: kept for the session that created the battle,
once, for a while; and only the claim decides whether they run."""

from __future__ import annotations

import time

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.planned import PlannedTurns
from arena.battles.service import SidePlan, TurnPlan
from arena.models import Battle, BattleStatus, Message, Side, utcnow
from arena.upstream.client import Endpoint
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.sse import start_battle


def _plan(battle_id: str) -> TurnPlan:
    endpoint = Endpoint(base_url="http://127.0.0.1:9/v1", model="m")
    side = SidePlan(1, endpoint, [{"role": "user", "content": "hi"}])
    return TurnPlan(battle_id=battle_id, turn=1, a=side, b=side)


def test_a_plan_goes_once_to_the_session_that_made_it() -> None:
    planned = PlannedTurns()
    planned.put("session-1", _plan("battle-1"))
    assert planned.take("battle-1", "session-2") is None  # someone else's battle
    assert planned.take("missing", "session-1") is None
    plan = planned.take("battle-1", "session-1")
    assert plan is not None and plan.battle_id == "battle-1"
    assert planned.take("battle-1", "session-1") is None  # a reload claims from the database
    assert len(planned) == 0


def test_plans_expire_and_are_bounded_in_number() -> None:
    planned = PlannedTurns(seconds=0.05, capacity=2)
    planned.put("s", _plan("old"))
    time.sleep(0.1)
    assert planned.take("old", "s") is None
    for battle_id in ("first", "second", "third"):
        planned.put("s", _plan(battle_id))
    assert len(planned) == 2
    assert planned.take("first", "s") is None  # the oldest made room
    assert planned.take("third", "s") is not None


def test_a_planned_turn_another_request_took_is_not_run(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    """The stream request starts the planned calls before its claim is written; when the claim
    finds the turn taken (by a request on another worker, here the test), the calls are dropped
    and nothing of them is stored."""
    arena.add_model("alpha", fake_upstream.base_url, "slow:0.02")
    arena.add_model("beta", fake_upstream.base_url, "slow:0.02")
    with arena.client() as visitor:
        battle_id = start_battle(visitor, "Who streams this?")

        async def taken_elsewhere(session: AsyncSession) -> None:
            await session.execute(
                update(Battle)
                .where(Battle.id == battle_id)
                .values(status=BattleStatus.streaming, stream_started_at=utcnow())
            )
            await session.commit()

        arena.db(taken_elsewhere)
        response = visitor.get(f"/api/battles/{battle_id}/stream")
        assert response.status_code == 409, response.text
        assert "already streaming" in response.json()["detail"]

    time.sleep(1.0)  # well past the time both answers would have taken

    async def stored(session: AsyncSession) -> tuple[list[Side], BattleStatus]:
        sides = await session.scalars(select(Message.side).where(Message.battle_id == battle_id))
        return list(sides), (await session.get_one(Battle, battle_id)).status

    assert arena.db(stored) == ([Side.user], BattleStatus.streaming)
