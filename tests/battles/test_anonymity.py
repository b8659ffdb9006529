"""Before the vote, nothing a visitor receives names a model, its organisation or its endpoint."""

from __future__ import annotations

import httpx

from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream

SECRETS = ["Zephyr-Secret-9b", "Quasar Hidden Labs", "Nimbus-Covert-3", "Orion Undisclosed"]


def _everything_seen(response: httpx.Response) -> str:
    seen = [response.text, str(response.status_code)]
    seen += [f"{name}: {value}" for name, value in response.headers.multi_items()]
    return "\n".join(seen)


def test_nothing_identifies_the_models_before_the_vote(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    upstream_ids = ["normal:0.0001", "normal:0.0002"]
    arena.add_model(SECRETS[0], fake_upstream.base_url, upstream_ids[0], organization=SECRETS[1])
    arena.add_model(SECRETS[2], fake_upstream.base_url, upstream_ids[1], organization=SECRETS[3])
    forbidden = [*SECRETS, *upstream_ids, fake_upstream.base_url, f":{fake_upstream.port}"]
    seen: list[str] = []
    with arena.client() as visitor:
        seen.append(_everything_seen(visitor.get("/")))
        created = visitor.post("/api/battles", json={"prompt": "Who are you?"})
        seen.append(_everything_seen(created))
        battle_id = created.json()["battle_id"]
        stream = read_stream(visitor, battle_id)
        seen.append(str(stream.events))
        seen += [f"{k}: {v}" for k, v in stream.headers.multi_items()]
        seen.append(_everything_seen(visitor.get(f"/api/battles/{battle_id}")))
        seen.append(_everything_seen(visitor.post(f"/api/battles/{battle_id}/turns", json={})))
        seen.append(_everything_seen(visitor.post(f"/api/battles/{battle_id}/vote", json={})))
        turn = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "And again?"})
        seen.append(_everything_seen(turn))
        seen.append(_everything_seen(visitor.post(f"/api/battles/{battle_id}/vote", json={})))
        seen.append(str(read_stream(visitor, battle_id).events))
        seen.append(str(read_stream(visitor, battle_id).events))  # the replay too
        seen.append(str(dict(visitor.cookies)))
        before_vote = "\n".join(seen)
        for secret in forbidden:
            assert secret not in before_vote, f"{secret!r} leaked before the vote"

        reveal = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_b"})
        assert reveal.status_code == 200
        assert SECRETS[0] in reveal.text and SECRETS[2] in reveal.text
        for secret in (*upstream_ids, fake_upstream.base_url):
            assert secret not in reveal.text, "endpoint details are never shown, even after"
