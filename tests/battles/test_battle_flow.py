"""The visitor's whole flow through real HTTP: battle, stream, follow-ups, vote, reveal."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Battle, BattleStatus, Message, Vote
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, answer_for
from tests.sse import read_stream, start_battle


def _two_models(arena: Arena, upstream: FakeUpstream, a: str = "normal", b: str = "normal") -> None:
    arena.add_model("alpha-7b", upstream.base_url, a, organization="Alpha Labs")
    arena.add_model("beta-13b", upstream.base_url, b, organization="Beta Inc")


def test_full_battle_and_vote(arena: Arena, fake_upstream: FakeUpstream) -> None:
    _two_models(arena, fake_upstream)
    with arena.client() as visitor:
        battle_id = start_battle(visitor, "Name a prime number")
        assert "arena_session" in visitor.cookies
        stream = read_stream(visitor, battle_id)
        assert stream.text("a") == answer_for("Name a prime number")
        assert stream.text("b") == answer_for("Name a prime number")
        assert stream.last("a") == {"side": "a", "type": "done", "finish_reason": "stop"}
        assert stream.last("b") == {"side": "b", "type": "done", "finish_reason": "stop"}
        assert stream.end == {"type": "end", "status": "ready"}

        before = visitor.get(f"/api/battles/{battle_id}").json()
        assert before["status"] == "ready" and before["models"] is None

        vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
        assert vote.status_code == 200, vote.text
        names = {vote.json()["model_a"]["name"], vote.json()["model_b"]["name"]}
        assert names == {"alpha-7b", "beta-13b"}
        orgs = {vote.json()["model_a"]["organization"], vote.json()["model_b"]["organization"]}
        assert orgs == {"Alpha Labs", "Beta Inc"}

        after = visitor.get(f"/api/battles/{battle_id}").json()
        assert after["status"] == "voted" and after["winner"] == "model_a"
        assert after["models"] == vote.json()
        assert [m["side"] for m in after["messages"]] == ["user", "a", "b"]

    async def stored(session: AsyncSession) -> tuple[str, str]:
        vote_row = await session.scalar(select(Vote).where(Vote.battle_id == battle_id))
        battle = await session.get_one(Battle, battle_id)
        assert vote_row is not None
        return vote_row.winner.value, battle.status.value

    assert arena.db(stored) == ("model_a", "voted")


def test_sides_stream_concurrently(arena: Arena, fake_upstream: FakeUpstream) -> None:
    """A slow side does not hold back the fast one, and two slow sides take the time of one."""
    _two_models(arena, fake_upstream, "slow:0.1", "normal")
    with arena.client() as visitor:
        stream = read_stream(visitor, start_battle(visitor))
    done_times = {
        e["side"]: t
        for e, t in zip(stream.events, stream.times, strict=True)
        if e["type"] == "done"
    }
    fast, slow = sorted(done_times, key=done_times.__getitem__)
    slow_deltas = [
        t
        for e, t in zip(stream.events, stream.times, strict=True)
        if e.get("side") == slow and e["type"] == "delta"
    ]
    # The fast side finished before the slow side had sent even a quarter of its words.
    assert done_times[fast] < slow_deltas[len(slow_deltas) // 4]


def test_two_slow_sides_overlap(arena: Arena, fake_upstream: FakeUpstream) -> None:
    _two_models(arena, fake_upstream, "slow:0.08", "slow:0.08")
    with arena.client() as visitor:
        stream = read_stream(visitor, start_battle(visitor))
    words = len(answer_for("What is the capital of France?").split(" "))
    one_side = words * 0.08
    assert stream.end["status"] == "ready"
    assert stream.times[-1] < one_side * 1.6  # sequential would take twice one side


def test_follow_up_turn_sends_the_whole_conversation(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url, "normal:0.0", organization="A")
    arena.add_model("beta-13b", fake_upstream.base_url, "normal:0.001", organization="B")
    with arena.client() as visitor:
        battle_id = start_battle(visitor, "first question")
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        turn = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "second question"})
        assert turn.status_code == 201, turn.text
        stream = read_stream(visitor, battle_id)
        assert stream.end["status"] == "ready"
        assert stream.text("a") == answer_for("second question")
        battle = visitor.get(f"/api/battles/{battle_id}").json()
        assert battle["turns"] == 2
        assert [(m["turn"], m["side"]) for m in battle["messages"]] == [
            (1, "user"),
            (1, "a"),
            (1, "b"),
            (2, "user"),
            (2, "a"),
            (2, "b"),
        ]
        assert visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"}).is_success

    for model in ("normal:0.0", "normal:0.001"):
        last = fake_upstream.requests_for(model)[-1].body["messages"]
        assert [m["role"] for m in last] == ["user", "assistant", "user"]
        assert last[0]["content"] == "first question"
        assert last[1]["content"] == answer_for("first question")
        assert last[2]["content"] == "second question"


def test_stream_again_replays_the_stored_turn(arena: Arena, fake_upstream: FakeUpstream) -> None:
    """A reload after the stream ended gets the same answers back, not a second upstream call."""
    _two_models(arena, fake_upstream, "normal:0.002", "normal:0.003")
    with arena.client() as visitor:
        battle_id = start_battle(visitor, "replay me")
        first = read_stream(visitor, battle_id)
        calls = len(fake_upstream.received)
        second = read_stream(visitor, battle_id)
    assert len(fake_upstream.received) == calls
    assert second.text("a") == first.text("a") and second.text("b") == first.text("b")
    assert second.end == {"type": "end", "status": "ready"}


def test_visitor_leaving_mid_stream_loses_nothing(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    _two_models(arena, fake_upstream, "slow:0.05", "slow:0.05")
    with arena.client() as visitor:
        battle_id = start_battle(visitor, "leave early")
        with visitor.stream("GET", f"/api/battles/{battle_id}/stream") as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    break  # close the connection after the first event
        replayed = read_stream(visitor, battle_id) if _wait_settled(arena, battle_id) else None
    assert replayed is not None
    assert replayed.text("a") == answer_for("leave early")
    assert replayed.end["status"] == "ready"


def _wait_settled(arena: Arena, battle_id: str, seconds: float = 10) -> bool:
    import time

    async def status(session: AsyncSession) -> BattleStatus:
        battle = await session.get_one(Battle, battle_id)
        return battle.status

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if arena.db(status) in (BattleStatus.ready, BattleStatus.failed):
            return True
        time.sleep(0.05)
    return False


def test_fewer_than_two_models_is_a_clear_503(arena: Arena, fake_upstream: FakeUpstream) -> None:
    arena.add_model("lonely", fake_upstream.base_url, "normal")
    with arena.client() as visitor:
        response = visitor.post("/api/battles", json={"prompt": "hello"})
    assert response.status_code == 503
    assert "Fewer than two models are active" in response.json()["detail"]
    assert "lonely" not in response.text


def test_healthz(arena: Arena) -> None:
    with arena.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_json_answer_without_streaming_is_accepted(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    _two_models(arena, fake_upstream, "json", "normal")
    with arena.client() as visitor:
        stream = read_stream(visitor, start_battle(visitor, "plain json please"))
    assert stream.end["status"] == "ready"
    assert stream.text("a") == stream.text("b") == answer_for("plain json please")


def test_messages_are_stored_with_timings(arena: Arena, fake_upstream: FakeUpstream) -> None:
    _two_models(arena, fake_upstream)
    with arena.client() as visitor:
        battle_id = start_battle(visitor)
        read_stream(visitor, battle_id)

    async def answers(session: AsyncSession) -> list[Message]:
        rows = await session.scalars(
            select(Message).where(Message.battle_id == battle_id, Message.side != "user")
        )
        return list(rows)

    rows = arena.db(answers)
    assert len(rows) == 2
    for row in rows:
        assert row.error is None and row.finish_reason == "stop"
        assert row.first_token_ms is not None and row.duration_ms is not None
        assert row.first_token_ms <= row.duration_ms

    async def vote_count(session: AsyncSession) -> int:
        return int(await session.scalar(select(func.count()).select_from(Vote)) or 0)

    assert arena.db(vote_count) == 0
