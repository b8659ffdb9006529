"""Every wrong request gets a 4xx with a message a person can act on, and changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Vote
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream, start_battle


@pytest.fixture
def ready_arena(arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream) -> Arena:
    arena = arena_factory(max_prompt_chars=50)
    arena.add_model("alpha", fake_upstream.base_url, "normal", organization="A")
    arena.add_model("beta", fake_upstream.base_url, "normal", organization="B")
    return arena


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n "}, "the prompt is empty"),
        ({"prompt": "x" * 51}, "over the limit of 50"),
        ({}, "prompt: is required; fill it in"),
        ({"prompt": 12}, "prompt"),
        ({"prompt": "nul\x00byte"}, "NUL"),
    ],
)
def test_bad_prompts(ready_arena: Arena, body: dict[str, object], expected: str) -> None:
    with ready_arena.client() as visitor:
        response = visitor.post("/api/battles", json=body)
    assert response.status_code == 422
    assert expected in response.json()["detail"]


def test_body_that_is_not_json(ready_arena: Arena) -> None:
    with ready_arena.client() as visitor:
        response = visitor.post(
            "/api/battles", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert "JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/battles/{id}", None),
        ("GET", "/api/battles/{id}/stream", None),
        ("POST", "/api/battles/{id}/vote", {"winner": "tie"}),
        ("POST", "/api/battles/{id}/turns", {"prompt": "more"}),
    ],
)
def test_unknown_battle_is_404(
    ready_arena: Arena, method: str, path: str, body: dict[str, str] | None
) -> None:
    with ready_arena.client() as visitor:
        response = visitor.request(method, path.format(id="no-such-battle"), json=body)
    assert response.status_code == 404
    assert "No battle with that id" in response.json()["detail"]


def test_vote_rules(ready_arena: Arena) -> None:
    with ready_arena.client() as visitor, ready_arena.client() as stranger:
        battle_id = start_battle(visitor)
        early = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
        assert early.status_code == 409
        assert "Wait until both answers have finished" in early.json()["detail"]
        early_turn = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "more"})
        assert early_turn.status_code == 409

        read_stream(visitor, battle_id)
        bad = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_c"})
        assert bad.status_code == 422
        assert "winner" in bad.json()["detail"] and "model_a" in bad.json()["detail"]

        foreign = stranger.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_b"})
        assert foreign.status_code == 403
        assert "another browser session" in foreign.json()["detail"]
        assert stranger.get(f"/api/battles/{battle_id}").status_code == 403
        assert stranger.get(f"/api/battles/{battle_id}/stream").status_code == 403

        first = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie (bothbad)"})
        assert first.status_code == 200
        second = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
        assert second.status_code == 409
        assert "already has a vote" in second.json()["detail"]
        after = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "more"})
        assert after.status_code == 409
        assert visitor.get(f"/api/battles/{battle_id}").json()["winner"] == "tie (bothbad)"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # Through the fast lane, whose parse fails and leaves the request to the app.
        ("/api/battles", {"prompt": "hi", "extra": 1}),
        ("/api/battles/{id}/turns", {"prompt": "again", "Prompt": ""}),
        ("/api/battles/{id}/vote", {"winner": "model_a", "reason": "better"}),
    ],
)
def test_unknown_fields_are_refused_and_named(
    ready_arena: Arena, path: str, body: dict[str, object]
) -> None:
    """Each visitor route that takes a body: a field it does not know gets a 422 naming it, and
    changes nothing; the same request without it is carried out."""
    unknown = next(name for name in body if name not in ("prompt", "winner"))
    with ready_arena.client() as visitor:
        battle_id = start_battle(visitor)
        read_stream(visitor, battle_id)
        refused = visitor.post(path.format(id=battle_id), json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json() == {
            "detail": f"{unknown}: not a field of this request; leave it out",
            "errors": [{"field": unknown, "message": "not a field of this request; leave it out"}],
        }
        battle = visitor.get(f"/api/battles/{battle_id}").json()
        assert (battle["turns"], battle["winner"]) == (1, None)
        known = {name: value for name, value in body.items() if name != unknown}
        assert visitor.post(path.format(id=battle_id), json=known).is_success


def test_a_long_unknown_field_is_named_shortened(ready_arena: Arena) -> None:
    with ready_arena.client() as visitor:
        response = visitor.post("/api/battles", json={"prompt": "hi", "k" * 50_000: 1})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "k" * 100 + "…"
    assert len(response.content) < 1000


def test_racing_votes_store_exactly_one(ready_arena: Arena) -> None:
    """Votes sent at once on one battle: one is taken, the rest answer 409, one row is stored."""
    with ready_arena.client() as visitor:
        battle_id = start_battle(visitor)
        read_stream(visitor, battle_id)
        cookies = dict(visitor.cookies)

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=ready_arena.url, cookies=cookies) as client:
            return await asyncio.gather(
                *(
                    client.post(f"/api/battles/{battle_id}/vote", json={"winner": winner})
                    for winner in ["model_a", "model_b", "tie"] * 4
                )
            )

    responses = asyncio.run(race())
    assert sorted(r.status_code for r in responses) == [200] + [409] * 11
    assert all("already has a vote" in r.json()["detail"] for r in responses if r.is_error)

    async def stored(session: AsyncSession) -> list[Vote]:
        return list(await session.scalars(select(Vote).where(Vote.battle_id == battle_id)))

    votes = ready_arena.db(stored)
    assert len(votes) == 1
    taken = next(r for r in responses if r.status_code == 200)
    assert set(taken.json()) == {"model_a", "model_b"}
    with ready_arena.client(cookies=cookies) as visitor:
        assert visitor.get(f"/api/battles/{battle_id}").json()["winner"] == votes[0].winner


def test_turn_limit(arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream) -> None:
    arena = arena_factory(max_turns=2)
    arena.add_model("alpha", fake_upstream.base_url, "normal", organization="A")
    arena.add_model("beta", fake_upstream.base_url, "normal", organization="B")
    with arena.client() as visitor:
        battle_id = start_battle(visitor)
        read_stream(visitor, battle_id)
        assert visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "2"}).is_success
        read_stream(visitor, battle_id)
        third = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "3"})
    assert third.status_code == 409
    assert "limit of 2 turns" in third.json()["detail"]


def test_forged_session_cookie_gets_a_new_session(ready_arena: Arena) -> None:
    with ready_arena.client(cookies={"arena_session": "<script>"}) as visitor:
        response = visitor.post("/api/battles", json={"prompt": "hi"})
    assert response.status_code == 201
    assert response.cookies.get("arena_session") not in (None, "<script>")
