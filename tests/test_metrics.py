"""/metrics: off by default, behind its token when one is set, counting what the operator needs,
naming no model when it is public, summed over workers; the Grafana dashboard reads only
metrics the arena exports."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.arena_process import ArenaProcess
from tests.conftest import Arena, add_model, make_settings
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream, start_battle

TOKEN = "metrics-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DASHBOARD = (
    Path(__file__).resolve().parent.parent / "docs" / "operations" / "grafana-dashboard.json"
)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def _scrape(arena: Arena, headers: dict[str, str] | None = None) -> str:
    response = httpx.get(f"{arena.url}/metrics", headers=headers or AUTH, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def _battle_and_vote(arena: Arena) -> None:
    with arena.client() as visitor:
        battle_id = start_battle(visitor)
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
        assert vote.status_code == 200, vote.text


def test_metrics_are_off_unless_switched_on(arena: Arena) -> None:
    response = httpx.get(f"{arena.url}/metrics", timeout=10)
    assert response.status_code == 404
    assert "ARENA_METRICS=on" in response.json()["detail"]


def test_the_token_guards_metrics_and_the_battle_is_counted(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(metrics=True, metrics_token=TOKEN, vote_rate_limit="1/hour")
    arena.add_model("alpha", fake_upstream.base_url, organization="A")
    arena.add_model("beta", fake_upstream.base_url, organization="B")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = httpx.get(f"{arena.url}/metrics", headers=headers, timeout=10)
        assert refused.status_code == 401, refused.text
        assert "Authorization: Bearer" in refused.json()["detail"]
        assert TOKEN not in refused.text

    before = _scrape(arena)
    _battle_and_vote(arena)
    with arena.client() as visitor:  # a second vote in the hour: refused by the vote limit
        battle_id = start_battle(visitor)
        read_stream(visitor, battle_id)
        assert visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"}).is_success
        second = start_battle(visitor)
        read_stream(visitor, second)
        limited = visitor.post(f"/api/battles/{second}/vote", json={"winner": "tie"})
        assert limited.status_code == 429
    after = _scrape(arena)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("arena_battles_started_total") == 3
    assert grew("arena_turns_total", outcome="ready") == 3
    assert grew("arena_votes_total", counted="true") == 2
    assert grew("arena_rate_limit_refusals_total", action="vote", scope="session") == 1
    models = {"alpha", "beta"}
    first_tokens = sum(grew("arena_model_first_token_seconds_count", model=m) for m in models)
    answers = sum(grew("arena_model_answer_seconds_count", model=m) for m in models)
    assert first_tokens == answers == 6  # two sides of three battles
    assert _value(after, "arena_open_streams") == 0


def test_public_metrics_name_no_model(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(metrics=True)
    arena.add_model("alpha", fake_upstream.base_url, organization="A")
    arena.add_model("beta", fake_upstream.base_url, organization="B")
    before = _scrape(arena, headers={})
    _battle_and_vote(arena)
    after = _scrape(arena, headers={})
    assert _value(after, "arena_battles_started_total") > _value(
        before, "arena_battles_started_total"
    )
    for text in (before, after):
        assert "alpha" not in text and "beta" not in text
        assert not re.search(r'model="', text)
        assert not re.search(r"^arena_upstream_errors_total\{", text, re.MULTILINE)


def _exported_names(text: str) -> set[str]:
    """Every series name the exposition announces (a TYPE line per family, whether or not it
    has samples yet), with the suffixes Prometheus adds to counters and histograms."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)
        if kind == "counter":
            names.add(name + "_total")
        if kind == "histogram":
            names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_every_dashboard_query_names_an_exported_metric(
    arena_factory: Callable[..., Arena],
) -> None:
    exported = _exported_names(_scrape(arena_factory(metrics=True, metrics_token=TOKEN)))
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(queries) >= 10
    named = {name for query in queries for name in re.findall(r"\barena_[a-z_]+\b", query)}
    assert named, "the dashboard reads no arena metric"
    unknown = sorted(named - exported)
    assert not unknown, f"the dashboard reads metrics the arena does not export: {unknown}"
    families = {name for name in exported if name.startswith("arena_")}
    unused = {
        name
        for name in families
        if not any(name == n or n.startswith(name + "_") for n in named)
        and not name.endswith(("_total", "_bucket", "_sum", "_count", "_created"))
    }
    assert not unused, f"metrics without a panel: {sorted(unused)}"


@pytest.mark.slow
def test_two_workers_sum_their_counts(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    settings = make_settings(database_url, tmp_path, metrics=True, workers=2)
    add_model(settings, "alpha", fake_upstream.base_url, organization="A")
    add_model(settings, "beta", fake_upstream.base_url, organization="B")
    served = ArenaProcess(settings, tmp_path / "serve.log", cli=True).start(timeout=90)
    try:
        for _ in range(6):  # each on a new connection: the kernel spreads them over the workers
            with httpx.Client(base_url=served.url, timeout=30) as visitor:
                battle_id = start_battle(visitor)
                assert read_stream(visitor, battle_id).end["status"] == "ready"
        for _ in range(4):  # whichever worker answers, the sums are the same
            text = httpx.get(f"{served.url}/metrics", timeout=10).text
            assert _value(text, "arena_battles_started_total") == 6
            assert _value(text, "arena_turns_total", outcome="ready") == 6
        assert (tmp_path / "metrics").is_dir()
    finally:
        served.stop()
