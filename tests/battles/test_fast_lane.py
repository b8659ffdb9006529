"""The battle's two hot requests are served beneath FastAPI (arena/battles/fast_lane.py): what a
client receives must not depend on which way a request went."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream


@pytest.fixture
def arena(arena: Arena, fake_upstream: FakeUpstream) -> Arena:
    """The arena with two fast models to battle."""
    arena.add_model("alpha", fake_upstream.base_url, "normal:0.001")
    arena.add_model("beta", fake_upstream.base_url, "normal:0.001")
    return arena


# Varies from answer to answer by nature.
_VARYING = {"date", "content-length", "set-cookie"}


def _cookie_attributes(response: httpx.Response) -> list[str]:
    _value, *attributes = response.headers["set-cookie"].split("; ")
    return sorted(attributes)


def _comparable(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() not in _VARYING}


def test_a_new_battle_answers_alike_both_ways(arena: Arena) -> None:
    body = b'{"prompt": "Which way did I come?"}'
    # application/json takes the fast lane; FastAPI also reads JSON sent as application/*+json,
    # which the fast lane leaves to the app.
    answers = []
    for content_type in ("application/json", "application/merge-patch+json"):
        with arena.client() as visitor:
            answers.append(
                visitor.post("/api/battles", content=body, headers={"content-type": content_type})
            )
    fast, app = answers
    assert fast.status_code == app.status_code == 201
    assert list(fast.json()) == list(app.json()) == ["battle_id"]
    assert _comparable(fast) == _comparable(app)
    assert _cookie_attributes(fast) == _cookie_attributes(app)
    assert "HttpOnly" in _cookie_attributes(fast)


def test_the_stream_and_its_replay_carry_the_same_headers(arena: Arena) -> None:
    with arena.client() as visitor:
        battle_id = visitor.post("/api/battles", json={"prompt": "Twice"}).json()["battle_id"]
        live = read_stream(visitor, battle_id)  # the fast lane: the turn starts here
        replayed = read_stream(visitor, battle_id)  # the app: the turn already ran
    assert live.end == replayed.end == {"type": "end", "status": "ready"}
    for side in ("a", "b"):
        assert live.text(side) == replayed.text(side)
        assert live.last(side) == replayed.last(side)
    assert {k: v for k, v in live.headers.items() if k not in _VARYING} == {
        k: v for k, v in replayed.headers.items() if k not in _VARYING
    }


def test_bad_requests_get_the_apps_own_answers(arena: Arena) -> None:
    with arena.client() as visitor:
        blank = visitor.post("/api/battles", json={"prompt": "   "})
        assert blank.status_code == 422
        assert blank.json()["detail"].startswith("prompt:"), blank.json()
        assert blank.json()["errors"][0]["field"] == "prompt"
        not_json = visitor.post(
            "/api/battles", content=b"{", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422
        unknown = visitor.get("/api/battles/no-such-battle/stream")
        assert unknown.status_code == 404
        assert "detail" in unknown.json()
    with arena.client() as stranger:
        with arena.client() as owner:
            battle_id = owner.post("/api/battles", json={"prompt": "Mine"}).json()["battle_id"]
        stranger.post("/api/battles", json={"prompt": "Gets me a cookie"})
        theirs = stranger.get(f"/api/battles/{battle_id}/stream")
        assert theirs.status_code == 403
