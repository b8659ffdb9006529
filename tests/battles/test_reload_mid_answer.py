"""A second request for a turn that is still streaming (a reload, a second tab) picks it up where
it is: the text so far at once, then the rest, instead of a 409."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import Arena, start_arena
from tests.fake_upstream import FakeUpstream, answer_for
from tests.sse import read_stream, start_battle

PROMPT = "Tell me slowly about rivers"


def _events_until(
    response: httpx.Response, enough: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            events.append(json.loads(line[6:]))
            if enough(events):
                break
    return events


def _text(events: list[dict[str, Any]], side: str) -> str:
    return "".join(e["text"] for e in events if e.get("side") == side and e["type"] == "delta")


def test_a_reload_mid_answer_gets_the_text_so_far_at_once_and_the_rest(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha", fake_upstream.base_url, "slow:0.1")
    arena.add_model("beta", fake_upstream.base_url, "slow:0.1")
    asked_before = len(fake_upstream.requests_for("slow:0.1"))
    with arena.client() as visitor:
        battle_id = start_battle(visitor, PROMPT)
        path = f"/api/battles/{battle_id}/stream"
        with visitor.stream("GET", path) as first:
            assert first.status_code == 200
            seen = _events_until(first, lambda events: len(events) >= 6)
            # A second tab while the first still reads: both follow the one turn.
            with visitor.stream("GET", path) as second_tab:
                assert second_tab.status_code == 200
                started = time.perf_counter()
                at_once = _events_until(second_tab, lambda events: len(events) >= len(seen))
                assert time.perf_counter() - started < 1.0
                assert at_once[: len(seen)] == seen
        # The first connection is gone (a reload): the next request reads on from the start.
        reloaded = read_stream(visitor, battle_id)
        assert reloaded.times[0] < 1.0, reloaded.times[:3]
        # The text so far comes in one piece, not token by token as the upstream sends it
        # (a token every 0.1 s): every event seen before arrives with the first.
        burst = [
            e
            for e, t in zip(reloaded.events, reloaded.times, strict=True)
            if t - reloaded.times[0] < 0.05
        ]
        assert len(burst) >= len(seen) and burst[: len(seen)] == seen
        assert reloaded.end["status"] == "ready"
        for side in ("a", "b"):
            assert reloaded.text(side) == answer_for(PROMPT)
            assert reloaded.last(side)["type"] == "done"
        # Asked once per side: following the turn calls nobody again.
        assert len(fake_upstream.requests_for("slow:0.1")) == asked_before + 2
        # Once over, it is replayed from the database as before.
        assert read_stream(visitor, battle_id).text("a") == answer_for(PROMPT)


def test_a_turn_streaming_on_another_worker_is_awaited_and_replayed_not_refused(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha", fake_upstream.base_url, "slow:0.05")
    arena.add_model("beta", fake_upstream.base_url, "slow:0.05")
    other_worker = start_arena(arena.settings)
    try:
        with arena.client() as visitor:
            battle_id = start_battle(visitor, PROMPT)
            path = f"/api/battles/{battle_id}/stream"
            with visitor.stream("GET", path) as first:
                _events_until(first, lambda events: len(events) >= 4)
                with other_worker.client(cookies=dict(visitor.cookies)) as same_visitor:
                    elsewhere = read_stream(same_visitor, battle_id)
            assert elsewhere.end["status"] == "ready"
            for side in ("a", "b"):
                assert elsewhere.text(side) == answer_for(PROMPT)
        with other_worker.client() as stranger:
            refused = stranger.get(path)
            assert refused.status_code == 403
    finally:
        other_worker.server.stop()
