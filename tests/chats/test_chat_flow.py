"""Direct chats through real HTTP: one chosen model, several turns, thumbs up or down per answer
stored as feedback for the model's owner (not a battle, not a rating)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.chats.service import CHAT_ERROR, fail_interrupted_turns
from arena.models import Battle, BattleStatus, Chat, ChatFeedback, Model, ModelStatus, utcnow
from arena.registry.keys import KeyRing
from arena.registry.stats import model_stats
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, answer_for


def _chat(client: httpx.Client, model: str, prompt: str) -> str:
    response = client.post("/api/chats", json={"model": model, "prompt": prompt})
    assert response.status_code == 201, response.text
    assert set(response.json()) == {"chat_id"}
    return str(response.json()["chat_id"])


def _stream(client: httpx.Client, chat_id: str) -> list[dict[str, Any]]:
    with client.stream("GET", f"/api/chats/{chat_id}/stream") as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def _text(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")


def test_chat_turns_and_feedback(arena: Arena, fake_upstream: FakeUpstream) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url, organization="Alpha Labs")
    with arena.client() as visitor:
        chat_id = _chat(visitor, "alpha-7b", "Name a prime number")
        events = _stream(visitor, chat_id)
        assert {e.get("side") for e in events if e["type"] != "end"} == {"a"}
        assert _text(events) == answer_for("Name a prime number")
        assert events[-2] == {"side": "a", "type": "done", "finish_reason": "stop"}
        assert events[-1] == {"type": "end", "status": "ready"}
        # A reload replays the stored answer.
        assert _text(_stream(visitor, chat_id)) == answer_for("Name a prime number")

        turn = visitor.post(f"/api/chats/{chat_id}/turns", json={"prompt": "And another?"})
        assert turn.status_code == 201, turn.text
        assert _text(_stream(visitor, chat_id)) == answer_for("And another?")
        # The follow-up carried the whole conversation upstream.
        sent = fake_upstream.received[-1].body["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert sent[1]["content"] == answer_for("Name a prime number")

        up = visitor.post(f"/api/chats/{chat_id}/feedback", json={"turn": 1, "rating": "up"})
        assert up.status_code == 200, up.text
        assert up.json() == {"chat_id": chat_id, "turn": 1, "rating": "up"}
        # A second thumb on the same answer replaces the first.
        assert visitor.post(
            f"/api/chats/{chat_id}/feedback", json={"turn": 1, "rating": "down"}
        ).is_success
        assert visitor.post(
            f"/api/chats/{chat_id}/feedback", json={"turn": 2, "rating": "up"}
        ).is_success
        view = visitor.get(f"/api/chats/{chat_id}").json()
        assert view["model"] == {
            "name": "alpha-7b",
            "organization": "Alpha Labs",
            "supports_images": False,
        }
        assert view["status"] == "ready" and view["turns"] == 2
        assert [(m["turn"], m["role"], m["feedback"]) for m in view["messages"]] == [
            (1, "user", None),
            (1, "assistant", "down"),
            (2, "user", None),
            (2, "assistant", "up"),
        ]

    async def stored(session: AsyncSession) -> tuple[int, int, dict[str, int]]:
        battles = await session.scalar(select(func.count(Battle.id)))
        thumbs = await session.scalar(select(func.count(ChatFeedback.id)))
        model = await session.scalar(select(Model).where(Model.name == "alpha-7b"))
        assert model is not None
        stats = await model_stats(
            session,
            model=model,
            keys=KeyRing.from_settings(arena.settings),
            breaker_threshold=5,
            window=timedelta(hours=1),
        )
        return battles or 0, thumbs or 0, stats.chat_feedback.model_dump()

    # Not a battle, not a vote: the owner sees the thumbs in the model's stats.
    assert arena.db(stored) == (0, 2, {"chats": 1, "up": 1, "down": 1})


def test_failed_answer_is_neutral_and_ends_the_chat(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("broken-1b", fake_upstream.base_url, "error500")
    with arena.client() as visitor:
        chat_id = _chat(visitor, "broken-1b", "hello")
        events = _stream(visitor, chat_id)
        assert events[-2] == {"side": "a", "type": "error", "message": CHAT_ERROR}
        assert events[-1] == {"type": "end", "status": "failed"}
        assert "500" not in json.dumps(events)
        turn = visitor.post(f"/api/chats/{chat_id}/turns", json={"prompt": "again"})
        assert turn.status_code == 409 and "start a new chat" in turn.json()["detail"]
        thumbs = visitor.post(f"/api/chats/{chat_id}/feedback", json={"turn": 1, "rating": "up"})
        assert thumbs.status_code == 409 and "failed" in thumbs.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"model": "nobody-70b", "prompt": "hi"}, 422, "no model is named 'nobody-70b'"),
        ({"model": "paused-1b", "prompt": "hi"}, 422, "'paused-1b' is paused"),
        ({"model": "retired-1b", "prompt": "hi"}, 422, "'retired-1b' is retired"),
        ({"model": "pending-1b", "prompt": "hi"}, 422, "'pending-1b' is pending"),
        ({"prompt": "hi"}, 422, "model"),
        ({"model": "alpha-7b", "prompt": "   "}, 422, "the prompt is empty"),
        ({"model": "alpha-7b", "prompt": "hi", "models": ["x"]}, 422, "models"),
        ({"model": "alpha-7b", "prompt": "x" * 9000}, 422, "over the limit"),
    ],
)
def test_hostile_chat_requests(
    arena: Arena, fake_upstream: FakeUpstream, body: dict[str, Any], status: int, says: str
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url)
    for model_status in (ModelStatus.paused, ModelStatus.retired, ModelStatus.pending):
        arena.add_model(f"{model_status.value}-1b", fake_upstream.base_url, status=model_status)
    with arena.client() as visitor:
        response = visitor.post("/api/chats", json=body)
        assert response.status_code == status, response.text
        assert says in response.json()["detail"]


def test_a_chat_is_its_visitors_only(arena: Arena, fake_upstream: FakeUpstream) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url)
    with arena.client() as visitor, arena.client() as stranger:
        chat_id = _chat(visitor, "alpha-7b", "hello")
        _stream(visitor, chat_id)
        assert stranger.get("/").is_success  # a session of its own
        for response in (
            stranger.get(f"/api/chats/{chat_id}"),
            stranger.get(f"/api/chats/{chat_id}/stream"),
            stranger.post(f"/api/chats/{chat_id}/turns", json={"prompt": "mine now"}),
            stranger.post(f"/api/chats/{chat_id}/feedback", json={"turn": 1, "rating": "up"}),
        ):
            assert response.status_code == 403, response.text
        assert visitor.get("/api/chats/nope").status_code == 404
        for body in (
            {"turn": 0, "rating": "up"},
            {"turn": 1, "rating": "meh"},
            {"turn": 1},
            {"turn": 1, "rating": "up", "extra": 1},
        ):
            bad = visitor.post(f"/api/chats/{chat_id}/feedback", json=body)
            assert bad.status_code == 422, (body, bad.text)
        not_yet = visitor.post(f"/api/chats/{chat_id}/feedback", json={"turn": 2, "rating": "up"})
        assert not_yet.status_code == 409 and "no answer for turn 2" in not_yet.json()["detail"]


def test_chats_share_the_battle_rate_limit(arena_factory: Any, fake_upstream: FakeUpstream) -> None:
    arena = arena_factory(battle_rate_limit="2/hour")
    arena.add_model("alpha-7b", fake_upstream.base_url)
    arena.add_model("beta-13b", fake_upstream.base_url)
    with arena.client() as visitor:
        assert visitor.post("/api/battles", json={"prompt": "one"}).status_code == 201
        _chat(visitor, "alpha-7b", "two")
        refused = visitor.post("/api/chats", json={"model": "alpha-7b", "prompt": "three"})
        assert refused.status_code == 429, refused.text


def test_a_chat_turn_left_streaming_by_a_dead_worker_is_ended(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url)
    with arena.client() as visitor:
        chat_id = _chat(visitor, "alpha-7b", "hello")

        async def left_streaming(session: AsyncSession) -> None:
            # As a worker killed mid-answer leaves it: claimed, never finished.
            await session.execute(
                update(Chat)
                .where(Chat.id == chat_id)
                .values(
                    status=BattleStatus.streaming,
                    stream_started_at=utcnow() - timedelta(hours=1),
                    streamed_by="gone-worker",
                )
            )

        arena.db(left_streaming)
        events = _stream(visitor, chat_id)
        assert events[-2:] == [
            {"side": "a", "type": "error", "message": CHAT_ERROR},
            {"type": "end", "status": "failed"},
        ]
        assert visitor.get(f"/api/chats/{chat_id}").json()["status"] == "failed"
        other_id = _chat(visitor, "alpha-7b", "hello again")

    async def settled_by_next_worker(session: AsyncSession) -> int:
        # The next worker to start ends such turns at once (arena/app.py, workers.py).
        await session.execute(
            update(Chat)
            .where(Chat.id == other_id)
            .values(status=BattleStatus.streaming, streamed_by="gone-worker")
        )
        return await session.run_sync(
            lambda sync: fail_interrupted_turns(sync.connection(), worker="gone-worker")
        )

    assert arena.db(settled_by_next_worker) == 1


def test_chat_prompts_are_moderated_as_battle_prompts(
    arena_factory: Any, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("zorblax\n")
    arena = arena_factory(moderation_blocklist_file=blocklist)
    arena.add_model("alpha-7b", fake_upstream.base_url)
    since = len(fake_upstream.received)
    with arena.client() as visitor:
        refused = visitor.post("/api/chats", json={"model": "alpha-7b", "prompt": "ZORBLAX now"})
        assert refused.status_code == 422 and "does not accept" in refused.json()["detail"]
        chat_id = _chat(visitor, "alpha-7b", "hello")
        _stream(visitor, chat_id)
        turn = visitor.post(f"/api/chats/{chat_id}/turns", json={"prompt": "zorblax?"})
        assert turn.status_code == 422 and "does not accept" in turn.json()["detail"]
        assert visitor.get(f"/api/chats/{chat_id}").json()["turns"] == 1
    prompts = [r.body["messages"][-1]["content"] for r in fake_upstream.received[since:]]
    assert prompts == ["hello"]
