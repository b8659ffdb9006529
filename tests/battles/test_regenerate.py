"""Asking both sides again for the latest turn, before the vote: new answers streamed, the vote
on them, the count stored and exported, the limits counting it as a turn."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Battle, Message, Side
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream, start_battle


def _stored_answers(arena: Arena, battle_id: str) -> dict[tuple[int, str], str]:
    async def read(session: AsyncSession) -> dict[tuple[int, str], str]:
        rows = await session.execute(
            select(Message.turn, Message.side, Message.content).where(
                Message.battle_id == battle_id, Message.side != Side.user
            )
        )
        return {(turn, side.value): content for turn, side, content in rows}

    return arena.db(read)


def _regenerations(arena: Arena, battle_id: str) -> int:
    async def read(session: AsyncSession) -> int:
        return int(
            await session.scalar(select(Battle.regenerations).where(Battle.id == battle_id)) or 0
        )

    return arena.db(read)


def test_regenerate_streams_new_answers_that_the_vote_and_the_export_carry(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory()
    arena.add_model("alpha", fake_upstream.base_url, "counting:0.001")
    arena.add_model("beta", fake_upstream.base_url, "counting:0.002")
    with arena.client() as visitor:
        battle_id = start_battle(visitor, "Tell me a fact")
        first = read_stream(visitor, battle_id)
        assert first.end["status"] == "ready"
        asked_before = {
            model: len(fake_upstream.requests_for(model))
            for model in ("counting:0.001", "counting:0.002")
        }

        again = visitor.post(f"/api/battles/{battle_id}/regenerate")
        assert again.status_code == 202, again.text
        assert again.json() == {"battle_id": battle_id, "regenerations": 1}
        # Until the new answers are in, there is nothing to vote on.
        early = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
        assert early.status_code == 409, early.text

        second = read_stream(visitor, battle_id)
        assert second.end["status"] == "ready"
        for side in ("a", "b"):
            assert second.text(side).startswith("Answer number ")
            assert second.text(side) != first.text(side), second.events
        # Both sides were asked again with the same conversation: the prompt, no old answer.
        for model, before in asked_before.items():
            asked = fake_upstream.requests_for(model)
            assert len(asked) == before + 1
            assert [m["role"] for m in asked[-1].body["messages"]] == ["user"]
        assert _stored_answers(arena, battle_id) == {
            (1, "a"): second.text("a"),
            (1, "b"): second.text("b"),
        }
        view = visitor.get(f"/api/battles/{battle_id}").json()
        assert view["regenerations"] == 1 and view["status"] == "ready"
        assert [m["content"] for m in view["messages"] if m["side"] != "user"] == [
            second.text("a"),
            second.text("b"),
        ]

        voted = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_b"})
        assert voted.status_code == 200, voted.text
        late = visitor.post(f"/api/battles/{battle_id}/regenerate")
        assert late.status_code == 409 and "voted" in late.json()["detail"]

        exported = [json.loads(line) for line in visitor.get("/battles.jsonl").text.splitlines()]
        assert [row["regenerations"] for row in exported] == [1]
        csv_lines = visitor.get("/battles.csv").text.splitlines()
        header = csv_lines[0].split(",")
        assert csv_lines[1].split(",")[header.index("regenerations")] == "1"
    assert _regenerations(arena, battle_id) == 1


def test_regenerations_count_as_turns_and_need_a_finished_battle_of_ones_own(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(max_turns=2)
    arena.add_model("alpha", fake_upstream.base_url, "slow:0.05")
    arena.add_model("beta", fake_upstream.base_url, "slow:0.05")
    with arena.client() as visitor, arena.client() as stranger:
        assert visitor.post("/api/battles/nope/regenerate").status_code == 404
        battle_id = start_battle(visitor)
        # Not yet answered: both answers must finish first.
        waiting = visitor.post(f"/api/battles/{battle_id}/regenerate")
        assert waiting.status_code == 409 and "finish" in waiting.json()["detail"]
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        theirs = stranger.post(f"/api/battles/{battle_id}/regenerate")
        assert theirs.status_code == 403, theirs.text

        assert visitor.post(f"/api/battles/{battle_id}/regenerate").status_code == 202
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        # One prompt and one regeneration make the two turns allowed.
        for refused in (
            visitor.post(f"/api/battles/{battle_id}/regenerate"),
            visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "More?"}),
        ):
            assert refused.status_code == 409, refused.text
            assert "limit of 2 turns" in refused.json()["detail"]
            assert "regenerations count" in refused.json()["detail"]
    assert _regenerations(arena, battle_id) == 1


def test_regenerations_spend_the_battle_rate_limit(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(battle_rate_limit="2/hour")
    arena.add_model("alpha", fake_upstream.base_url)
    arena.add_model("beta", fake_upstream.base_url)
    with arena.client() as visitor:
        battle_id = start_battle(visitor)
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        assert visitor.post(f"/api/battles/{battle_id}/regenerate").status_code == 202
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        third = visitor.post(f"/api/battles/{battle_id}/regenerate")
        assert third.status_code == 429, third.text
    assert _regenerations(arena, battle_id) == 1
