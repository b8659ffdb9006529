"""Integrity through real HTTP: every vote is stored, flagged votes are kept but not counted."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Vote
from tests.conftest import Arena, require
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream, start_battle


def _battle_and_vote(visitor: httpx.Client, prompt: str = "Tell me a fact") -> httpx.Response:
    battle_id = start_battle(visitor, prompt)
    assert read_stream(visitor, battle_id).end["status"] == "ready"
    return visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})


def _votes(arena: Arena) -> list[tuple[bool, list[str]]]:
    async def work(session: AsyncSession) -> list[tuple[bool, list[str]]]:
        rows = await session.scalars(select(Vote).order_by(Vote.id))
        return [(v.counted, list(v.flags)) for v in rows]

    return arena.db(work)


def test_an_answer_naming_its_own_model_is_stored_but_not_counted(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(identity_aliases={"Alpha Labs": ["AlphaBot"]})
    arena.add_model(
        "alpha-7b", fake_upstream.base_url, "says:Hi, AlphaBot here.", organization="Alpha Labs"
    )
    arena.add_model("beta-13b", fake_upstream.base_url, "normal", organization="Beta Inc")
    with arena.client() as visitor:
        vote = _battle_and_vote(visitor)
        # The visitor still gets the reveal: the exclusion is the operator's business.
        assert vote.status_code == 200, vote.text
        counts = visitor.get("/api/votes/counts").json()
    assert _votes(arena) == [(False, ["identity_leak"])]
    assert counts["total"] == 1 and counts["counted"] == 0 and counts["excluded"] == 1
    assert counts["by_reason"] == {"identity_leak": 1}
    assert "own model" in counts["reasons"]["identity_leak"]


def test_a_name_disguised_with_invisible_or_lookalike_letters_is_still_a_leak(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory()
    # A zero-width space inside the name on one side, a Cyrillic "а" in the organisation and a
    # soft hyphen on the other: each reads as the plain word to the visitor.
    arena.add_model("zwleak", fake_upstream.base_url, "says:Hello, I am zw\u200bleak.")
    arena.add_model(
        "quiet-7b",
        fake_upstream.base_url,
        "says:Trained by Bl\u0430ck Sw\u00adan Labs, at your service.",
        organization="Black Swan Labs",
    )
    with arena.client() as visitor:
        vote = _battle_and_vote(visitor)
        assert vote.status_code == 200, vote.text
        counts = visitor.get("/api/votes/counts").json()
    assert _votes(arena) == [(False, ["identity_leak"])]
    assert counts["counted"] == 0 and counts["by_reason"] == {"identity_leak": 1}


def test_answers_that_only_share_a_common_word_are_counted(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory()
    arena.add_model(
        "meta-chat",
        fake_upstream.base_url,
        "says:Metadata is data about data.",
        organization="Meta",
    )
    arena.add_model(
        "parrot-1",
        fake_upstream.base_url,
        "says:Open the parrot's cage.",
        organization="Open Parrot",
    )
    with arena.client() as visitor:
        assert _battle_and_vote(visitor).status_code == 200
    assert _votes(arena) == [(True, [])]


def test_a_prompt_past_the_duplicate_limit_is_not_counted(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(duplicate_prompt_limit=2)
    arena.add_model("alpha", fake_upstream.base_url, "normal", organization="A")
    arena.add_model("beta", fake_upstream.base_url, "normal", organization="B")
    with arena.client() as visitor:
        for prompt in ["Hi there", "hi   THERE", "Something else", " HI there\n"]:
            assert _battle_and_vote(visitor, prompt).status_code == 200
    assert _votes(arena) == [
        (True, []),
        (True, []),
        (True, []),
        (False, ["duplicate_prompt"]),
    ]


def test_a_vote_faster_than_reading_is_not_counted(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(min_vote_seconds=30.0, max_reading_seconds=60.0)
    arena.add_model("alpha", fake_upstream.base_url, "normal", organization="A")
    arena.add_model("beta", fake_upstream.base_url, "normal", organization="B")
    with arena.client() as visitor:
        assert _battle_and_vote(visitor).status_code == 200

    async def seconds(session: AsyncSession) -> float | None:
        vote = await session.scalar(select(Vote))
        assert vote is not None
        return vote.seconds_to_vote

    assert _votes(arena) == [(False, ["too_fast"])]
    taken = arena.db(seconds)
    assert taken is not None and 0 <= taken < 30


def test_rate_limits_answer_429_with_retry_after_and_flag_later_votes(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(battle_rate_limit="2/minute", vote_rate_limit="5/minute")
    arena.add_model("alpha", fake_upstream.base_url, "normal", organization="A")
    arena.add_model("beta", fake_upstream.base_url, "normal", organization="B")
    with arena.client() as visitor, arena.client() as other:
        first = start_battle(visitor, "one")
        second = start_battle(visitor, "two")
        refused = visitor.post("/api/battles", json={"prompt": "three"})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        detail = refused.json()["detail"]
        assert "Too many new battles and follow-ups from this browser session" in detail
        assert "alpha" not in refused.text and "beta" not in refused.text
        # Another session is not held back by this one.
        assert _battle_and_vote(other).status_code == 200
        read_stream(visitor, first)
        read_stream(visitor, second)
        # The refused session may still vote, but its votes in the next hour do not count.
        assert visitor.post(f"/api/battles/{first}/vote", json={"winner": "tie"}).is_success
    assert _votes(arena) == [(True, []), (False, ["rate_limited"])]


def test_votes_and_addresses_have_limits_too(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    # Hourly, not per minute: a sliding window's estimate lets a request of the last window
    # fade at once, so a window's boundary between two calls would let the second one pass.
    arena = arena_factory(
        battle_rate_limit="", battle_ip_rate_limit="3/hour", vote_rate_limit="1/hour"
    )
    arena.add_model("alpha", fake_upstream.base_url, "normal", organization="A")
    arena.add_model("beta", fake_upstream.base_url, "normal", organization="B")
    with arena.client() as visitor:
        ids = [start_battle(visitor, f"question {i}") for i in range(3)]
        for battle_id in ids[:2]:
            read_stream(visitor, battle_id)
        assert visitor.post(f"/api/battles/{ids[0]}/vote", json={"winner": "tie"}).is_success
        again = visitor.post(f"/api/battles/{ids[1]}/vote", json={"winner": "tie"})
        assert again.status_code == 429 and "Too many votes" in again.json()["detail"]
        assert int(again.headers["retry-after"]) >= 1
    with arena.client() as newcomer:
        # Every test client shares 127.0.0.1: the address limit holds for a new session too.
        blocked = newcomer.post("/api/battles", json={"prompt": "hello"})
        assert blocked.status_code == 429
        assert "your network address" in blocked.json()["detail"]
    # Nothing was stored for the refused vote; the battle can still be voted on later.
    assert len(_votes(arena)) == 1


@pytest.mark.parametrize("counters", ["memory", "redis"])
@pytest.mark.parametrize(
    ("limits", "who"),
    [
        # Hourly, for the reason given in test_votes_and_addresses_have_limits_too
        ({"battle_rate_limit": "1/hour", "battle_ip_rate_limit": ""}, "this browser session"),
        ({"battle_rate_limit": "", "battle_ip_rate_limit": "1/hour"}, "your network address"),
    ],
    ids=["session", "address"],
)
def test_a_follow_up_costs_from_the_battle_budget(
    arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    counters: str,
    limits: dict[str, str],
    who: str,
) -> None:
    redis_url = ""
    if counters == "redis":
        redis_url = os.environ.get("ARENA_TEST_REDIS_URL", "")
        require(bool(redis_url), "Redis tests need ARENA_TEST_REDIS_URL")
    arena = arena_factory(
        redis_url=redis_url, rate_limit_key_prefix=f"arena-test-{uuid.uuid4().hex}", **limits
    )
    arena.add_model("alpha", fake_upstream.base_url, "normal", organization="A")
    arena.add_model("beta", fake_upstream.base_url, "normal", organization="B")
    with arena.client() as visitor:
        battle_id = start_battle(visitor, "first question")
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        refused = visitor.post("/api/battles", json={"prompt": "another battle"})
        assert refused.status_code == 429, refused.text
        calls = len(fake_upstream.received)

        follow_up = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "and then?"})
        assert follow_up.status_code == 429, follow_up.text
        detail = follow_up.json()["detail"]
        assert detail.startswith(f"Too many new battles and follow-ups from {who} (limit 1 per")
        assert 1 <= int(follow_up.headers["retry-after"]) <= 3600
        # The turn was not added: the stream replays the first answers, and no endpoint is asked.
        replayed = read_stream(visitor, battle_id)
        assert replayed.end["status"] == "ready" and "first question" in replayed.text("a")
        assert visitor.get(f"/api/battles/{battle_id}").json()["turns"] == 1
    assert len(fake_upstream.received) == calls
