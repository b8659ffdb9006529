"""Asking a direct chat's model again for its latest answer, through real HTTP on both databases:
the new answer streamed in place of the old, whose thumbs go with it; the count kept and shown;
refused while answering, after a failed answer, for another visitor; counted as a turn against
the chat's limit and the rate limits."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Chat, ChatFeedback, ChatMessage, ChatRole, Feedback, Model, ModelStatus
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.sse import read_chat_stream, start_chat

COUNTING = "counting:0.001"


def _stored(arena: Arena, chat_id: str) -> tuple[int, list[tuple[int, str]], list[tuple[int, str]]]:
    """The chat's regenerations, its stored answers and its thumbs, by turn."""

    async def read(
        session: AsyncSession,
    ) -> tuple[int, list[tuple[int, str]], list[tuple[int, str]]]:
        regenerations = await session.scalar(select(Chat.regenerations).where(Chat.id == chat_id))
        answers = await session.execute(
            select(ChatMessage.turn, ChatMessage.content)
            .where(ChatMessage.chat_id == chat_id, ChatMessage.role == ChatRole.assistant)
            .order_by(ChatMessage.turn)
        )
        thumbs = await session.execute(
            select(ChatFeedback.turn, ChatFeedback.rating)
            .where(ChatFeedback.chat_id == chat_id)
            .order_by(ChatFeedback.turn)
        )
        return (
            int(regenerations or 0),
            [(turn, content) for turn, content in answers],
            [(turn, rating.value) for turn, rating in thumbs],
        )

    return arena.db(read)


def test_regenerate_streams_a_new_latest_answer_and_drops_its_thumbs(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory()
    arena.add_model("alpha-7b", fake_upstream.base_url, COUNTING)
    with arena.client() as visitor:
        chat_id = start_chat(visitor, "alpha-7b", "Tell me a fact")
        first = read_chat_stream(visitor, chat_id)
        assert first.end["status"] == "ready"
        assert visitor.post(f"/api/chats/{chat_id}/turns", json={"prompt": "Another?"}).is_success
        second = read_chat_stream(visitor, chat_id)
        assert second.end["status"] == "ready"
        for turn, rating in ((1, "up"), (2, "down")):
            thumbs = visitor.post(
                f"/api/chats/{chat_id}/feedback", json={"turn": turn, "rating": rating}
            )
            assert thumbs.status_code == 200, thumbs.text
        asked_before = len(fake_upstream.requests_for(COUNTING))

        again = visitor.post(f"/api/chats/{chat_id}/regenerate")
        assert again.status_code == 202, again.text
        assert again.json() == {"chat_id": chat_id, "regenerations": 1}
        # Until the new answer is in, there is nothing to rate for that turn.
        early = visitor.post(f"/api/chats/{chat_id}/feedback", json={"turn": 2, "rating": "up"})
        assert early.status_code == 409 and "no answer for turn 2" in early.json()["detail"]

        third = read_chat_stream(visitor, chat_id)
        assert third.end["status"] == "ready"
        assert third.text("a").startswith("Answer number ")
        assert third.text("a") != second.text("a"), third.events
        # Asked once more, with the conversation up to the latest prompt and not the dropped answer.
        asked = fake_upstream.requests_for(COUNTING)
        assert len(asked) == asked_before + 1
        sent = asked[-1].body["messages"]
        assert [(m["role"], m["content"]) for m in sent] == [
            ("user", "Tell me a fact"),
            ("assistant", first.text("a")),
            ("user", "Another?"),
        ]
        assert second.text("a") not in json.dumps(sent)
        # A reload replays the new answer.
        assert read_chat_stream(visitor, chat_id).text("a") == third.text("a")

        view = visitor.get(f"/api/chats/{chat_id}").json()
        assert view["status"] == "ready" and view["turns"] == 2 and view["regenerations"] == 1
        assert [(m["turn"], m["role"], m["content"], m["feedback"]) for m in view["messages"]] == [
            (1, "user", "Tell me a fact", None),
            (1, "assistant", first.text("a"), "up"),
            (2, "user", "Another?", None),
            (2, "assistant", third.text("a"), None),
        ]
        # The new answer takes thumbs of its own.
        assert visitor.post(
            f"/api/chats/{chat_id}/feedback", json={"turn": 2, "rating": "up"}
        ).is_success

    assert _stored(arena, chat_id) == (
        1,
        [(1, first.text("a")), (2, third.text("a"))],
        [(1, Feedback.up.value), (2, Feedback.up.value)],
    )


def test_regenerate_needs_a_finished_answer_of_ones_own_chat(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("slow-7b", fake_upstream.base_url, "slow:0.05")
    arena.add_model("broken-1b", fake_upstream.base_url, "error500")
    with arena.client() as visitor, arena.client() as stranger:
        assert stranger.get("/").is_success  # a session of its own
        unknown = visitor.post("/api/chats/nope/regenerate")
        assert unknown.status_code == 404 and "No chat with that id" in unknown.json()["detail"]

        chat_id = start_chat(visitor, "slow-7b", "Count to ten")
        pending = visitor.post(f"/api/chats/{chat_id}/regenerate")
        assert pending.status_code == 409 and "Wait for the answer" in pending.json()["detail"]
        with visitor.stream("GET", f"/api/chats/{chat_id}/stream") as response:
            lines = response.iter_lines()
            assert any(line.startswith("data: ") for line in lines)  # the answer is coming
            streaming = visitor.post(f"/api/chats/{chat_id}/regenerate")
            assert streaming.status_code == 409, streaming.text
            assert "Wait for the answer to finish" in streaming.json()["detail"]
            rest = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        assert rest[-1] == {"type": "end", "status": "ready"}

        theirs = stranger.post(f"/api/chats/{chat_id}/regenerate")
        assert theirs.status_code == 403 and "another browser session" in theirs.json()["detail"]

        failed_id = start_chat(visitor, "broken-1b", "hello")
        assert read_chat_stream(visitor, failed_id).end["status"] == "failed"
        failed = visitor.post(f"/api/chats/{failed_id}/regenerate")
        assert failed.status_code == 409, failed.text
        assert failed.json()["detail"] == "The latest answer of this chat failed; start a new chat."

        async def pause(session: AsyncSession) -> None:
            await session.execute(
                update(Model).where(Model.name == "slow-7b").values(status=ModelStatus.paused)
            )

        arena.db(pause)
        paused = visitor.post(f"/api/chats/{chat_id}/regenerate")
        assert paused.status_code == 409 and "'slow-7b' is paused" in paused.json()["detail"]

    assert _stored(arena, chat_id)[0] == 0
    assert _stored(arena, failed_id)[0] == 0


def test_regenerations_count_as_turns_against_the_chat_limit(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(max_turns=2)
    arena.add_model("alpha-7b", fake_upstream.base_url)
    with arena.client() as visitor:
        chat_id = start_chat(visitor, "alpha-7b", "hello")
        assert read_chat_stream(visitor, chat_id).end["status"] == "ready"
        assert visitor.post(f"/api/chats/{chat_id}/regenerate").status_code == 202
        assert read_chat_stream(visitor, chat_id).end["status"] == "ready"
        # One prompt and one regeneration make the two turns allowed.
        for refused in (
            visitor.post(f"/api/chats/{chat_id}/regenerate"),
            visitor.post(f"/api/chats/{chat_id}/turns", json={"prompt": "More?"}),
        ):
            assert refused.status_code == 409, refused.text
            assert "limit of 2 turns" in refused.json()["detail"]
            assert "regenerations count" in refused.json()["detail"]
        view = visitor.get(f"/api/chats/{chat_id}").json()
        assert view["turns"] == 1 and view["regenerations"] == 1

        # A follow-up spends a turn the regeneration then cannot.
        other_id = start_chat(visitor, "alpha-7b", "hello again")
        assert read_chat_stream(visitor, other_id).end["status"] == "ready"
        assert visitor.post(f"/api/chats/{other_id}/turns", json={"prompt": "More?"}).is_success
        assert read_chat_stream(visitor, other_id).end["status"] == "ready"
        late = visitor.post(f"/api/chats/{other_id}/regenerate")
        assert late.status_code == 409 and "limit of 2 turns" in late.json()["detail"]
    assert _stored(arena, chat_id)[0] == 1
    assert _stored(arena, other_id)[0] == 0


def test_regenerations_spend_the_battle_rate_limit(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(battle_rate_limit="2/hour")
    arena.add_model("alpha-7b", fake_upstream.base_url)
    with arena.client() as visitor:
        chat_id = start_chat(visitor, "alpha-7b", "hello")
        assert read_chat_stream(visitor, chat_id).end["status"] == "ready"
        assert visitor.post(f"/api/chats/{chat_id}/regenerate").status_code == 202
        assert read_chat_stream(visitor, chat_id).end["status"] == "ready"
        third = visitor.post(f"/api/chats/{chat_id}/regenerate")
        assert third.status_code == 429, third.text
    assert _stored(arena, chat_id)[0] == 1
