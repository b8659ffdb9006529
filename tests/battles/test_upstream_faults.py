"""A dead, slow, lying or garbage-sending endpoint ends its side cleanly; others carry on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.turns import NEUTRAL_ERROR
from arena.models import Message, Model, ModelStatus
from arena.registry import service as registry
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, answer_for
from tests.sse import read_stream, start_battle

FAULTS = {
    "hang": "timeout",  # never answers
    "hang-after-headers": "timeout",
    "hang-midstream": "timeout",
    "error500": "status",
    "error429": "status",
    "midstream-close": "protocol",
    "garbage": "protocol",
    "invalid-utf8": "protocol",
    "html": "protocol",
    "huge:2000000": "too_large",
    "huge:10000000": "too_large",  # a 10 MB answer is cut at ARENA_MAX_ANSWER_BYTES
    "drip:0.2": "timeout",  # a byte every 0.2 s never makes a token before the deadline
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_broken_side_fails_the_battle_cleanly(
    fault: str, arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(first_token_timeout=0.6, idle_timeout=0.6, total_timeout=5)
    arena.add_model("healthy", fake_upstream.base_url, "normal", organization="Good Org")
    arena.add_model("broken", fake_upstream.base_url, fault, organization="Bad Org")
    with arena.client() as visitor:
        battle_id = start_battle(visitor, "are you there?")
        stream = read_stream(visitor, battle_id)
        assert stream.end == {"type": "end", "status": "failed"}
        errors = [e for e in stream.events if e["type"] == "error"]
        assert len(errors) == 1
        assert errors[0]["message"] == NEUTRAL_ERROR
        healthy_side = "a" if errors[0]["side"] == "b" else "b"
        assert stream.text(healthy_side) == answer_for("are you there?")
        assert stream.last(healthy_side)["type"] == "done"

        vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
        assert vote.status_code == 409
        assert "cannot be voted on" in vote.json()["detail"]
        follow_up = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "again?"})
        assert follow_up.status_code == 409
        view = visitor.get(f"/api/battles/{battle_id}").json()
        assert view["status"] == "failed" and view["models"] is None
        assert NEUTRAL_ERROR in [m["error"] for m in view["messages"]]

    async def operator_view(session: AsyncSession) -> tuple[list[str], int]:
        rows = await session.scalars(select(Message).where(Message.error.is_not(None)))
        broken = await session.scalar(select(Model).where(Model.name == "broken"))
        assert broken is not None
        return [row.error or "" for row in rows], broken.consecutive_failures

    errors_logged, failures = arena.db(operator_view)
    assert len(errors_logged) == 1 and errors_logged[0].startswith(FAULTS[fault])
    assert failures == 1

    # The server still serves everyone else.
    async def pause_broken(session: AsyncSession) -> None:
        broken = await registry.model_by_name(session, "broken")
        await registry.set_status(session, model=broken, status=ModelStatus.paused, actor="test")

    arena.db(pause_broken)
    arena.add_model("healthy-too", fake_upstream.base_url, "normal:0.0", organization="X")
    with arena.client() as other:
        assert read_stream(other, start_battle(other)).end["status"] == "ready"
