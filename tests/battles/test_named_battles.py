"""Side-by-side (named) battles through real HTTP: the visitor names the models, sees the names
from the start, may vote; the vote is stored with its mode and never rated."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.leaderboard.snapshots import RecomputeConfig, run_recompute
from arena.models import Battle, BattleMode, Model, ModelStatus, Vote
from arena.registry.keys import KeyRing
from arena.registry.stats import model_stats
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, answer_for
from tests.sse import read_stream, start_battle


def _models(arena: Arena, upstream: FakeUpstream) -> None:
    arena.add_model("alpha-7b", upstream.base_url, organization="Alpha Labs")
    arena.add_model("beta-13b", upstream.base_url, organization="Beta Inc")
    arena.add_model("gamma-2b", upstream.base_url, organization="Gamma")


def _named(client: httpx.Client, prompt: str, models: list[str]) -> str:
    response = client.post(
        "/api/battles", json={"prompt": prompt, "mode": "named", "models": models}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["battle_id"])


def test_named_battle_shows_names_from_the_start_and_is_never_rated(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    _models(arena, fake_upstream)
    with arena.client() as visitor:
        battle_id = _named(visitor, "Name a prime number", ["beta-13b", "alpha-7b"])
        view = visitor.get(f"/api/battles/{battle_id}").json()
        assert view["mode"] == "named"
        # Side A is the first model named, and both names are there before any answer.
        assert view["models"] == {
            "model_a": {"name": "beta-13b", "organization": "Beta Inc"},
            "model_b": {"name": "alpha-7b", "organization": "Alpha Labs"},
        }
        stream = read_stream(visitor, battle_id)
        assert stream.text("a") == answer_for("Name a prime number")
        assert stream.end == {"type": "end", "status": "ready"}
        follow_up = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "Another"})
        assert follow_up.status_code == 201, follow_up.text
        assert read_stream(visitor, battle_id).end == {"type": "end", "status": "ready"}
        vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
        assert vote.status_code == 200, vote.text
        assert vote.json()["model_a"]["name"] == "beta-13b"
        counts = visitor.get("/api/votes/counts").json()
        assert counts["counted"] == 0
        listed = visitor.get("/api/me/battles").json()["battles"]
        assert listed[0]["models"]["model_b"]["name"] == "alpha-7b"
        exported = [json.loads(line) for line in visitor.get("/battles.jsonl").text.splitlines()]

    async def stored(session: AsyncSession) -> tuple[BattleMode, bool, list[str]]:
        battle = await session.get_one(Battle, battle_id)
        vote_row = await session.scalar(select(Vote).where(Vote.battle_id == battle_id))
        assert vote_row is not None
        return battle.mode, vote_row.counted, list(vote_row.flags)

    assert arena.db(stored) == (BattleMode.named, False, ["named"])
    # Exported as FastChat's clean battles mark a named battle, so the rating engine drops it.
    assert [(r["model_a"], r["model_b"], r["winner"], r["anony"]) for r in exported] == [
        ("beta-13b", "alpha-7b", "model_a", False)
    ]


def test_named_votes_are_counted_apart_in_owner_stats(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    _models(arena, fake_upstream)
    with arena.client() as visitor:
        named_id = _named(visitor, "Which is better?", ["alpha-7b", "gamma-2b"])
        read_stream(visitor, named_id)
        assert visitor.post(f"/api/battles/{named_id}/vote", json={"winner": "model_b"}).is_success
        anonymous_id = start_battle(visitor, "A different question entirely")
        read_stream(visitor, anonymous_id)
        assert visitor.post(f"/api/battles/{anonymous_id}/vote", json={"winner": "tie"}).is_success

    async def stats(session: AsyncSession) -> tuple[int, dict[str, int], float | None]:
        model = await session.scalar(select(Model).where(Model.name == "gamma-2b"))
        assert model is not None
        out = await model_stats(
            session,
            model=model,
            keys=KeyRing.from_settings(arena.settings),
            breaker_threshold=5,
            window=timedelta(hours=1),
        )
        return out.votes, out.named_votes.model_dump(), out.sampling_share_all

    votes, named, share = arena.db(stats)
    assert named == {"votes": 1, "wins": 1, "losses": 0, "ties": 0, "both_bad": 0}
    # The anonymous vote (if gamma-2b was drawn into it) is the only one among `votes`, and the
    # named battle takes no seat in the sampling shares.
    assert votes in (0, 1)
    assert share in (None, 0.0, 0.5)


def test_one_named_model_draws_the_other(arena: Arena, fake_upstream: FakeUpstream) -> None:
    _models(arena, fake_upstream)
    others = set()
    with arena.client() as visitor:
        for i in range(6):
            view = visitor.get(f"/api/battles/{_named(visitor, f'q {i}', ['alpha-7b'])}").json()
            assert view["models"]["model_a"]["name"] == "alpha-7b"
            others.add(view["models"]["model_b"]["name"])
    assert others <= {"beta-13b", "gamma-2b"} and others


def test_anonymous_mode_stays_the_default(arena: Arena, fake_upstream: FakeUpstream) -> None:
    _models(arena, fake_upstream)
    with arena.client() as visitor:
        explicit = visitor.post("/api/battles", json={"prompt": "hi", "mode": "anonymous"})
        assert explicit.status_code == 201, explicit.text
        assert explicit.json() == {"battle_id": explicit.json()["battle_id"]}
        view = visitor.get(f"/api/battles/{explicit.json()['battle_id']}").json()
        assert view["mode"] == "anonymous" and view["models"] is None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"mode": "anonymous", "models": ["alpha-7b"]}, "anonymous battle draws"),
        ({"models": ["alpha-7b", "beta-13b"]}, "anonymous battle draws"),
        ({"mode": "named"}, "one or two model names"),
        ({"mode": "named", "models": []}, "one or two model names"),
        ({"mode": "named", "models": ["alpha-7b", "alpha-7b"]}, "named twice"),
        ({"mode": "named", "models": ["a", "b", "c"]}, "at most 2"),
        ({"mode": "named", "models": ["nobody-70b"]}, "no model is named 'nobody-70b'"),
        ({"mode": "named", "models": ["alpha-7b", "paused-1b"]}, "'paused-1b' is paused"),
        ({"mode": "named", "models": ["retired-1b"]}, "'retired-1b' is retired"),
        ({"mode": "named", "models": ["pending-1b"]}, "'pending-1b' is pending"),
        ({"mode": "secret", "models": ["alpha-7b"]}, "mode"),
    ],
)
def test_hostile_named_requests_get_422(
    arena: Arena, fake_upstream: FakeUpstream, body: dict[str, object], says: str
) -> None:
    _models(arena, fake_upstream)
    for status in (ModelStatus.paused, ModelStatus.retired, ModelStatus.pending):
        arena.add_model(f"{status.value}-1b", fake_upstream.base_url, status=status)
    with arena.client() as visitor:
        response = visitor.post("/api/battles", json={"prompt": "hello", **body})
        assert response.status_code == 422, response.text
        assert says in response.json()["detail"]

    async def battles(session: AsyncSession) -> int:
        return len((await session.scalars(select(Battle.id))).all())

    assert arena.db(battles) == 0


def test_a_snapshot_export_with_named_votes_still_reproduces_the_leaderboard(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    _models(arena, fake_upstream)
    with arena.client() as visitor:
        anonymous = start_battle(visitor, "What is the tallest mountain?")
        read_stream(visitor, anonymous)
        assert visitor.post(f"/api/battles/{anonymous}/vote", json={"winner": "tie"}).is_success
        named = _named(visitor, "Write a haiku", ["gamma-2b", "alpha-7b"])
        read_stream(visitor, named)
        assert visitor.post(f"/api/battles/{named}/vote", json={"winner": "model_a"}).is_success
        assert run_recompute(RecomputeConfig.from_settings(arena.settings)).ran
        board = visitor.get("/api/leaderboard").json()
        snapshot = board["snapshot"]["id"]
        lines = visitor.get(f"/battles.jsonl?snapshot={snapshot}").text.splitlines()
        card = visitor.get(f"/battles.card.md?snapshot={snapshot}").text
        model_page = visitor.get("/api/leaderboard/models/gamma-2b").json()
    assert sorted(json.loads(line)["anony"] for line in lines) == [False, True]
    assert "reproduces that table" in card
    assert "1 votes of side-by-side battles" in card
    assert model_page["named_votes"] == 1
    # The rating engine reads the same file and leaves the named row out.
    assert board["snapshot"]["n_votes"] == 1
