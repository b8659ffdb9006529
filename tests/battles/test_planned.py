"""First turns planned at a battle's creation: kept for the session that created the battle,
once, for a while; relayed at once, and only the claim decides whether they stand."""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.planned import PlannedTurns
from arena.battles.turns import SidePlan, TurnPlan
from arena.db import make_sync_engine
from arena.models import Battle, BattleStatus, Message, Side, utcnow
from arena.upstream.client import Endpoint
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream, start_battle


def _plan(battle_id: str) -> TurnPlan:
    endpoint = Endpoint(base_url="http://127.0.0.1:9/v1", model="m")
    side = SidePlan(1, endpoint, [{"role": "user", "content": "hi"}])
    return TurnPlan(battle_id=battle_id, turn=1, a=side, b=side)


def test_a_plan_goes_once_to_the_session_that_made_it() -> None:
    async def scenario() -> None:
        planned = PlannedTurns()
        planned.put("session-1", _plan("battle-1"))
        assert planned.take("battle-1", "session-2") is None  # someone else's battle
        assert planned.take("missing", "session-1") is None
        plan = planned.take("battle-1", "session-1")
        assert plan is not None and plan.battle_id == "battle-1"
        assert planned.take("battle-1", "session-1") is None  # a reload claims from the database
        assert len(planned) == 0
        planned.close()

    asyncio.run(scenario())


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plans_expire_on_every_access_and_are_bounded_in_number() -> None:
    async def scenario() -> None:
        clock = _Clock()
        planned = PlannedTurns(seconds=60, capacity=2, clock=clock)
        planned.put("s", _plan("old"))
        clock.now += 59.9
        assert len(planned) == 1
        clock.now += 0.2
        assert len(planned) == 0  # no new plan was put: the access alone drops it
        planned.put("s", _plan("taken late"))
        clock.now += 61
        assert planned.take("taken late", "s") is None
        for battle_id in ("first", "second", "third"):
            planned.put("s", _plan(battle_id))
        assert len(planned) == 2
        assert planned.take("first", "s") is None  # the oldest made room
        assert planned.take("third", "s") is not None
        planned.close()

    asyncio.run(scenario())


def test_a_timer_drops_expired_plans_and_their_keys_with_no_access_at_all() -> None:
    """Nothing asks for the plan after it was put: the timer alone lets the plan (and the
    endpoint keys in it) go. The loop runs timers in the order they are due, so the sleep,
    due later, wakes after the timer's check."""

    async def scenario() -> None:
        planned = PlannedTurns(seconds=0.01, timer_slack=0.0)
        plan = _plan("forgotten")
        kept = weakref.ref(plan.a.endpoint)
        planned.put("s", plan)
        del plan
        await asyncio.sleep(0.05)
        assert kept() is None, "the expired plan is still held"
        planned.close()

    asyncio.run(scenario())


def test_a_planned_turn_another_request_took_is_cut_short_and_not_stored(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    """The stream request relays the planned calls before its claim is written; when the claim
    finds the turn taken (by a request on another worker, here the test), the calls are dropped,
    nothing of them is stored, and the stream ends without its "end" event: a stream cut short,
    which the visitor's page asks for again and is answered once the other worker has stored it
    (tests/battles/test_reload_mid_answer.py)."""
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
        cut_short = read_stream(visitor, battle_id)
        assert all(event["type"] != "end" for event in cut_short.events), cut_short.events

    time.sleep(1.0)  # well past the time both answers would have taken
    assert arena.db(_stored(battle_id)) == ([Side.user], BattleStatus.streaming)


def test_a_busy_database_does_not_hold_back_the_first_token(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    """With the battle's row locked by another transaction, the claim waits, but the planned
    turn's tokens are relayed meanwhile; a second request for the turn (a second tab) waits for
    that claim rather than racing it. Once the lock goes, the claim succeeds, the second request
    is told the turn is streaming (or replays it), and the turn is stored and votable as usual."""
    arena.add_model("alpha", fake_upstream.base_url, "slow:0.02")
    arena.add_model("beta", fake_upstream.base_url, "slow:0.02")
    engine = make_sync_engine(arena.settings.database_url)
    try:
        with arena.client() as visitor:
            battle_id = start_battle(visitor, "Busy database?")
            events: list[dict[str, Any]] = []
            with engine.connect() as blocker:
                # On SQLite this takes the database's write lock, on PostgreSQL the row's.
                blocker.execute(
                    update(Battle).where(Battle.id == battle_id).values(turns=Battle.turns)
                )
                stream = visitor.stream("GET", f"/api/battles/{battle_id}/stream", timeout=5.0)
                with stream as response:
                    assert response.status_code == 200
                    lines = response.iter_lines()
                    for line in lines:
                        if line.startswith("data: "):
                            events.append(json.loads(line[6:]))
                            break
                    assert events[0]["type"] == "delta", events  # the claim still waits
                    with (
                        arena.client(cookies=visitor.cookies) as second_tab,
                        ThreadPoolExecutor(1) as pool,
                    ):
                        second = pool.submit(second_tab.get, f"/api/battles/{battle_id}/stream")
                        time.sleep(0.3)
                        assert not second.done()
                        blocker.rollback()
                        events += [
                            json.loads(line[6:]) for line in lines if line.startswith("data: ")
                        ]
                        again = second.result(timeout=10)
            assert events[-1] == {"type": "end", "status": "ready"}
            if again.status_code == 200:  # the turn was over before the request got its answer
                assert again.text.rstrip().endswith('data: {"type":"end","status":"ready"}')
            else:
                assert again.status_code == 409 and "already streaming" in again.text
            vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"})
            assert vote.status_code == 200, vote.text
    finally:
        engine.dispose()
    sides, status = arena.db(_stored(battle_id))
    assert sorted(sides) == sorted([Side.user, Side.a, Side.b]) and status == BattleStatus.voted


def _stored(
    battle_id: str,
) -> Callable[[AsyncSession], Awaitable[tuple[list[Side], BattleStatus]]]:
    async def stored(session: AsyncSession) -> tuple[list[Side], BattleStatus]:
        sides = await session.scalars(select(Message.side).where(Message.battle_id == battle_id))
        return list(sides), (await session.get_one(Battle, battle_id)).status

    return stored
