"""Direct chats as safe as battles, through real HTTP on both databases: an answer moderation
flags is withheld (in the stream, the chat's view and a reload) and counted; the moderation
endpoint down follows ARENA_MODERATION_WHEN_DOWN; failed chat answers feed the circuit breaker;
the owner sees the chat answers, failures and withheld answers in the model's stats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.chats.service import CHAT_ERROR, CHAT_WITHHELD
from arena.models import Model, ModerationRefusal
from tests.conftest import Arena
from tests.fake_upstream import MOD_500, FakeUpstream, answer_for
from tests.registry.accounts import ADMIN_TOKEN, bearer, owner_with_model
from tests.sse import read_chat_stream, start_chat

WITHHELD = {"side": "a", "type": "withheld", "message": CHAT_WITHHELD}
FAILED_END = {"type": "end", "status": "failed"}


def _refusals(arena: Arena) -> list[tuple[str, str, str | None, str | None]]:
    async def work(session: AsyncSession) -> list[tuple[str, str, str | None, str | None]]:
        rows = await session.execute(
            select(
                ModerationRefusal.stage,
                ModerationRefusal.reason,
                ModerationRefusal.battle_id,
                ModerationRefusal.chat_id,
            ).order_by(ModerationRefusal.id)
        )
        return [(stage, reason, battle, chat) for stage, reason, battle, chat in rows]

    return arena.db(work)


def _failures(arena: Arena, name: str) -> tuple[int, str]:
    """The circuit breaker's count of the model's failures in a row, and its status."""

    async def work(session: AsyncSession) -> tuple[int, str]:
        model = await session.scalar(select(Model).where(Model.name == name))
        assert model is not None
        return model.consecutive_failures, model.status.value

    return arena.db(work)


def _stats(arena: Arena, token: str, name: str) -> dict[str, Any]:
    with arena.client() as owner:
        answer = owner.get(f"/api/models/{name}/stats", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        stats: dict[str, Any] = answer.json()
        return stats


def _metric(arena: Arena, series: str) -> float:
    with arena.client() as reader:
        for line in reader.get("/metrics").text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    return 0.0


def _answers(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in view["messages"] if m["role"] == "assistant"]


def test_a_flagged_chat_answer_is_withheld_everywhere_and_counted(
    arena_factory: Any, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    blocklist = tmp_path / "blocklist.txt"
    # The prompt "zorblax" passes (one word of the phrase); the answer echoing it does not.
    blocklist.write_text("asked zorblax\n")
    arena = arena_factory(moderation_blocklist_file=blocklist, metrics=True)
    token = owner_with_model(arena, fake_upstream.base_url, name="alpha-7b")
    refused = 'arena_moderation_refusals_total{reason="blocklist",stage="answer"}'
    before = _metric(arena, refused)
    with arena.client() as visitor:
        chat_id = start_chat(visitor, "alpha-7b", "Hello")
        assert read_chat_stream(visitor, chat_id).end == {"type": "end", "status": "ready"}
        assert visitor.post(f"/api/chats/{chat_id}/turns", json={"prompt": "zorblax"}).is_success

        # The answer streams as it is written, then is taken back: withheld, the chat over.
        stream = read_chat_stream(visitor, chat_id)
        assert stream.text("a") == answer_for("zorblax")
        assert stream.events[-3:] == [
            {"side": "a", "type": "done", "finish_reason": "stop"},
            WITHHELD,
            FAILED_END,
        ]

        # Never again as text: not in the chat's view, not in a reload's replay.
        view = visitor.get(f"/api/chats/{chat_id}").json()
        assert view["status"] == "failed"
        first, second = _answers(view)
        assert first["content"] == answer_for("Hello") and not first["withheld"]
        assert second == {
            "turn": 2,
            "role": "assistant",
            "content": "",
            "finish_reason": None,
            "error": CHAT_WITHHELD,
            "feedback": None,
            "withheld": True,
            "image_count": 0,
        }
        assert answer_for("zorblax") not in str(view)
        assert read_chat_stream(visitor, chat_id).events == [WITHHELD, FAILED_END]

        # The chat takes no follow-up, and the withheld answer no thumbs; the first one still does.
        more = visitor.post(f"/api/chats/{chat_id}/turns", json={"prompt": "go on"})
        assert more.status_code == 409 and "start a new chat" in more.json()["detail"]
        again = visitor.post(f"/api/chats/{chat_id}/regenerate")
        assert again.status_code == 409 and "withheld" in again.json()["detail"]
        thumbs = visitor.post(f"/api/chats/{chat_id}/feedback", json={"turn": 2, "rating": "up"})
        assert thumbs.status_code == 409 and "withheld by moderation" in thumbs.json()["detail"]
        assert visitor.post(
            f"/api/chats/{chat_id}/feedback", json={"turn": 1, "rating": "up"}
        ).is_success

    # Counted for the operator, with the chat (and no battle) it came from.
    assert _refusals(arena) == [("answer", "blocklist", None, chat_id)]
    assert _metric(arena, refused) - before == 1
    with arena.client() as operator:
        signed_in = operator.post("/admin/login", data={"token": ADMIN_TOKEN})
        assert signed_in.status_code in (200, 303)
        assert "<td>answer</td><td>blocklist</td><td>1</td>" in operator.get("/admin").text

    # The model answered: no failure for the circuit breaker. Its owner sees the counts only.
    assert _failures(arena, "alpha-7b") == (0, "active")
    stats = _stats(arena, token, "alpha-7b")
    assert stats["chat_answers"] == {
        "answers": 2,
        "failed_answers": 0,
        "withheld_answers": 1,
        "error_rate": 0.0,
    }
    assert stats["consecutive_failures"] == 0 and stats["recent_errors"] == []
    assert "zorblax" not in str(stats) and "Hello" not in str(stats)


@pytest.mark.parametrize("when_down", ["stop", "continue"])
def test_chat_answers_and_the_moderation_endpoint(
    arena_factory: Any, fake_upstream: FakeUpstream, when_down: str
) -> None:
    arena = arena_factory(
        moderation_url=f"{fake_upstream.base_url}/moderations",
        moderation_timeout=0.5,
        moderation_when_down=when_down,
    )
    arena.add_model("violent-7b", fake_upstream.base_url, "says:Some FLAG-violence here")
    arena.add_model("breaks-mod-7b", fake_upstream.base_url, f"says:an answer {MOD_500}")
    with arena.client() as visitor:
        # Flagged by the endpoint: withheld whatever the setting says.
        flagged_id = start_chat(visitor, "violent-7b", "Tell me a story")
        assert read_chat_stream(visitor, flagged_id).events[-2:] == [WITHHELD, FAILED_END]
        # The endpoint down on the answer (HTTP 500): ARENA_MODERATION_WHEN_DOWN decides.
        down_id = start_chat(visitor, "breaks-mod-7b", "hello")
        stream = read_chat_stream(visitor, down_id)
        view = visitor.get(f"/api/chats/{down_id}").json()
        replayed = read_chat_stream(visitor, down_id)

    asked = [r.body["input"] for r in fake_upstream.received if r.path.endswith("/moderations")]
    assert "Some FLAG-violence here" in asked and f"an answer {MOD_500}" in asked
    if when_down == "stop":
        assert stream.events[-2:] == [WITHHELD, FAILED_END]
        assert view["status"] == "failed" and _answers(view)[0]["error"] == CHAT_WITHHELD
        assert MOD_500 not in str(view)
        assert replayed.events == [WITHHELD, FAILED_END]
        assert _refusals(arena) == [
            ("answer", "flagged:violence", None, flagged_id),
            ("answer", "unavailable", None, down_id),
        ]
    else:
        assert stream.end == {"type": "end", "status": "ready"}
        assert view["status"] == "ready" and _answers(view)[0]["content"] == f"an answer {MOD_500}"
        assert replayed.text("a") == f"an answer {MOD_500}"
        assert _refusals(arena) == [("answer", "flagged:violence", None, flagged_id)]


def test_failed_chat_answers_trip_the_circuit_breaker_and_an_answer_resets_it(
    arena_factory: Any, fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(circuit_breaker_failures=2, health_probe_seconds=0)
    token = owner_with_model(arena, fake_upstream.base_url, name="flaky-7b")

    def upstream(behaviour: str) -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(Model).where(Model.name == "flaky-7b").values(upstream_model=behaviour)
            )

        arena.db(work)

    def chat(visitor: httpx.Client) -> str:
        chat_id = start_chat(visitor, "flaky-7b", "hello")
        stream = read_chat_stream(visitor, chat_id)
        return str(stream.end["status"])

    with arena.client() as visitor:
        upstream("error500")
        assert chat(visitor) == "failed"
        assert _failures(arena, "flaky-7b") == (1, "active")
        assert _stats(arena, token, "flaky-7b")["consecutive_failures"] == 1

        # One answer resets the count, for the breaker and in what the owner reads.
        upstream("normal")
        assert chat(visitor) == "ready"
        assert _failures(arena, "flaky-7b") == (0, "active")
        assert _stats(arena, token, "flaky-7b")["consecutive_failures"] == 0

        upstream("error500")
        assert chat(visitor) == "failed"
        assert _failures(arena, "flaky-7b") == (1, "active")
        assert chat(visitor) == "failed"
        assert _failures(arena, "flaky-7b") == (2, "paused")

        # Paused: no new chat with it.
        refused = visitor.post("/api/chats", json={"model": "flaky-7b", "prompt": "hi"})
        assert refused.status_code == 422 and "'flaky-7b' is paused" in refused.json()["detail"]

    stats = _stats(arena, token, "flaky-7b")
    assert stats["status"] == "paused" and stats["events"][0]["actor"] == "circuit-breaker"
    assert "2 consecutive failed answers (last failure: http_status)" in stats["status_reason"]
    assert stats["consecutive_failures"] == 2
    assert stats["chat_answers"] == {
        "answers": 4,
        "failed_answers": 3,
        "withheld_answers": 0,
        "error_rate": 0.75,
    }
    # The chat failures in the recent errors, explained as the battles' are; no battle counted.
    errors = stats["recent_errors"]
    assert [e["source"] for e in errors] == ["chat"] * 3
    assert all("500" in e["error"] for e in errors)
    assert stats["answers"] == stats["failed_answers"] == stats["battles"] == 0
    assert CHAT_ERROR not in str(stats) and "hello" not in str(stats)
