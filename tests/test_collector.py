"""The collector's policy while the app serves, and what it rests on: a battle makes no
reference cycles, so reference counting frees all of it and the collector's passes find nothing."""

from __future__ import annotations

import gc
import http.client
import json
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

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


def _battle_with_a_follow_up_and_a_vote(conn: http.client.HTTPConnection, cookie: str) -> str:
    """A visitor's whole flow over the standard library's client, which itself makes no cycles
    (httpx's responses do, and would hide the server's)."""

    def call(method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
        headers = {"Cookie": cookie} if cookie else {}
        data = None if body is None else json.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        given = response.getheader("set-cookie")
        if given and not cookie:
            cookies.append(given.split(";")[0])
        return response.status, response.read()

    cookies: list[str] = []
    status, body = call("POST", "/api/battles", {"prompt": "Name a prime number"})
    assert status == 201, body
    cookie = cookie or cookies[0]
    battle_id = json.loads(body)["battle_id"]
    for turn in range(2):
        if turn:
            status, body = call("POST", f"/api/battles/{battle_id}/turns", {"prompt": "Another"})
            assert status in (200, 201), body
        status, body = call("GET", f"/api/battles/{battle_id}/stream")
        assert status == 200 and b'"status":"ready"' in body, body[-300:]
    status, body = call("POST", f"/api/battles/{battle_id}/vote", {"winner": "tie"})
    assert status == 200, body
    return cookie


def test_battles_leave_no_reference_cycles(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(battle_rate_limit="", battle_ip_rate_limit="", vote_rate_limit="")
    arena.add_model("alpha-7b", fake_upstream.base_url, "normal")
    arena.add_model("beta-13b", fake_upstream.base_url, "slow:0.01")
    address = urlsplit(arena.url)
    conn = http.client.HTTPConnection(address.hostname or "", address.port)
    cookie = ""
    for _ in range(3):  # the first battles fill caches and pools, which may hold cycles for good
        cookie = _battle_with_a_follow_up_and_a_vote(conn, cookie)
    gc.collect()

    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(10):
            cookie = _battle_with_a_follow_up_and_a_vote(conn, cookie)
        found = gc.collect()
        kinds = Counter(type(thing).__qualname__ for thing in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        conn.close()
    assert found == 0, f"cycles left by ten battles: {kinds.most_common(12)}"
