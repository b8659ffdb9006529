"""The collector's policy while the app serves, and what it rests on: a battle makes no
reference cycles, so reference counting frees all of it and the collector's passes find nothing."""

from __future__ import annotations

import gc
import http.client
import json
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import arena as arena_package
from arena.collector import SERVING_YOUNG_THRESHOLD, serving_collector
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream


def test_the_policy_holds_while_serving_and_is_given_back() -> None:
    before = gc.get_threshold()
    with serving_collector(young_threshold=1234):
        assert gc.get_threshold() == (1234, *before[1:])
        assert gc.get_freeze_count() > 0  # what existed before serving
        with serving_collector(young_threshold=99):  # a second app in the same process
            assert gc.get_threshold()[0] == 1234
        assert gc.get_threshold()[0] == 1234  # the first app still serves
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_app_serves_under_the_policy(arena: Arena) -> None:
    assert gc.get_threshold()[0] == SERVING_YOUNG_THRESHOLD
    with arena.client() as visitor:
        assert visitor.get("/healthz").status_code == 200


class _Visitor:
    """A visitor on the standard library's HTTP client, which itself makes no cycles (httpx's
    responses do, and would hide the server's)."""

    def __init__(self, url: str) -> None:
        address = urlsplit(url)
        self.conn = http.client.HTTPConnection(address.hostname or "", address.port)
        self.cookie = ""

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        data = None if body is None else json.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        given = response.getheader("set-cookie")
        if given and not self.cookie:
            self.cookie = given.split(";")[0]
        return response.status, response.read()

    def start_battle(self) -> str:
        status, body = self.call("POST", "/api/battles", {"prompt": "Name a prime number"})
        assert status == 201, body
        battle_id: str = json.loads(body)["battle_id"]
        return battle_id


def _battle_with_a_follow_up_and_a_vote(visitor: _Visitor) -> None:
    call = visitor.call
    battle_id = visitor.start_battle()
    for turn in range(2):
        if turn:
            status, body = call("POST", f"/api/battles/{battle_id}/turns", {"prompt": "Another"})
            assert status in (200, 201), body
        status, body = call("GET", f"/api/battles/{battle_id}/stream")
        assert status == 200 and b'"status":"ready"' in body, body[-300:]
    status, body = call("POST", f"/api/battles/{battle_id}/vote", {"winner": "tie"})
    assert status == 200, body


def _failed_battle(visitor: _Visitor) -> None:
    battle_id = visitor.start_battle()
    status, body = visitor.call("GET", f"/api/battles/{battle_id}/stream")
    assert status == 200 and b'"status":"failed"' in body, body[-300:]


def _collected_by_the_cycle_collector(run: Callable[[], None]) -> list[object]:
    """What the cycle collector frees of what `run` left behind."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_battles_leave_no_reference_cycles(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(battle_rate_limit="", battle_ip_rate_limit="", vote_rate_limit="")
    arena.add_model("alpha-7b", fake_upstream.base_url, "normal")
    arena.add_model("beta-13b", fake_upstream.base_url, "slow:0.01")
    visitor = _Visitor(arena.url)
    for _ in range(3):  # the first battles fill caches and pools, which may hold cycles for good
        _battle_with_a_follow_up_and_a_vote(visitor)

    def ten_battles() -> None:
        for _ in range(10):
            _battle_with_a_follow_up_and_a_vote(visitor)

    garbage = _collected_by_the_cycle_collector(ten_battles)
    visitor.conn.close()
    kinds = Counter(type(thing).__qualname__ for thing in garbage)
    assert not garbage, f"cycles left by ten battles: {kinds.most_common(12)}"


_ARENA_CODE = str(Path(arena_package.__file__).parent)


def _the_arenas(garbage: list[object]) -> Counter[str]:
    """The arena's own objects among `garbage`: the fake upstream runs in this process, and
    asyncio's streams and transports make cycles of their own when a connection breaks."""
    found: Counter[str] = Counter()
    for thing in garbage:
        if isinstance(thing, types.FrameType):
            if thing.f_code.co_filename.startswith(_ARENA_CODE):
                found[f"frame of {thing.f_code.co_name}"] += 1
        elif type(thing).__module__.startswith("arena"):
            found[type(thing).__qualname__] += 1
        elif isinstance(thing, types.FunctionType) and thing.__module__.startswith("arena"):
            found[f"function {thing.__qualname__}"] += 1
    return found


@pytest.mark.parametrize(
    "broken", ["midstream-close", "garbage", "invalid-utf8", "huge:200000", "hang-after-headers"]
)
def test_battles_against_broken_endpoints_leave_no_reference_cycles(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream, broken: str
) -> None:
    arena = arena_factory(
        battle_rate_limit="",
        battle_ip_rate_limit="",
        first_token_timeout=0.3,
        idle_timeout=0.3,
        circuit_breaker_failures=0,
    )
    arena.add_model("alpha-7b", fake_upstream.base_url, "normal")
    arena.add_model("beta-13b", fake_upstream.base_url, broken)
    visitor = _Visitor(arena.url)
    for _ in range(2):
        _failed_battle(visitor)

    def five_battles() -> None:
        for _ in range(5):
            _failed_battle(visitor)

    found = _the_arenas(_collected_by_the_cycle_collector(five_battles))
    visitor.conn.close()
    assert not found, f"the arena's objects in cycles after five failed battles: {found}"
