"""Leaderboard views through the recompute and the routes: exclusions, retired models, rank
change, each with its JSON and CSV twin (both databases)."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from playwright.sync_api import expect
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import ModelStatus
from arena.registry import service as registry
from tests.browser import BrowserPage
from tests.conftest import Arena
from tests.leaderboard.conftest import (
    ENGLISH,
    STRENGTHS,
    add_models,
    recompute,
    seed_held_back_duplicates,
    seed_votes,
    simulated_votes,
)

SHORT = "Hi?"  # one estimated token


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_exclusions_are_stored_views_with_their_twins(quiet_arena: Arena) -> None:
    add_models(quiet_arena)
    votes = simulated_votes(STRENGTHS, 300, tie_share=0.2, prompts=(ENGLISH, ENGLISH, SHORT))
    seed_votes(quiet_arena.settings.database_url, votes)
    assert recompute(quiet_arena).failed == ()
    ties = sum(v.winner.startswith("tie") for v in votes)
    short = sum(v.prompt == SHORT for v in votes)
    both = sum(v.winner.startswith("tie") or v.prompt == SHORT for v in votes)
    with quiet_arena.client() as client:
        plain = client.get("/api/leaderboard").json()
        assert plain["n_battles"] == 300 and plain["exclusions"] == ["ties", "short"]
        for exclude, left in (
            ("ties", 300 - ties),
            ("short", 300 - short),
            ("short,ties", 300 - both),
        ):
            answer = client.get("/api/leaderboard", params={"exclude": exclude})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["n_battles"] == left
            key = "+".join(e for e in ("ties", "short") if e in exclude)
            assert body["exclude"] == key.split("+")
            assert body["snapshot"]["view"] == key == answer.headers["x-arena-view"]
            assert body["params"]["exclusions"] == key.split("+")
            assert body["vote_set_hash"] != plain["vote_set_hash"]
            assert answer.headers["x-arena-vote-set-hash"] == body["vote_set_hash"]
            # The CSV twin: the same rows, the same snapshot in its headers, a telling name.
            table = client.get("/leaderboard.csv", params={"exclude": exclude, "method": "elo"})
            elo = client.get("/api/leaderboard", params={"exclude": exclude, "method": "elo"})
            assert table.headers["x-arena-snapshot-id"] == str(elo.json()["snapshot"]["id"])
            assert [r["model"] for r in _csv_rows(table.text)] == [
                m["model"] for m in elo.json()["models"]
            ]
            assert f"without-{key.replace('+', '-')}" in table.headers["content-disposition"]
        # The short view leaves out the one-token prompt under the default cut of 5 tokens.
        body = client.get("/api/leaderboard", params={"exclude": "short"}).json()
        assert body["params"]["min_prompt_tokens"] == 5
        page = client.get("/leaderboard", params={"exclude": "ties", "category": "all"})
        assert page.status_code == 200 and 'aria-checked="true"' in page.text
        assert f"{300 - ties:,} votes remain" in page.text
        wrong = client.get("/api/leaderboard", params={"exclude": "draws"})
        assert wrong.status_code == 422 and "ties, short, refusals" in wrong.text


def _retire(arena: Arena, name: str) -> None:
    async def work(session: AsyncSession) -> None:
        model = await registry.model_by_name(session, name)
        await registry.set_status(
            session, model=model, status=ModelStatus.retired, reason="superseded", actor="test"
        )

    arena.db(work)


def test_retired_models_are_hidden_unless_shown(rated_arena: Arena) -> None:
    _retire(rated_arena, "delta-mini")
    with rated_arena.client() as client:
        hidden = client.get("/api/leaderboard").json()
        shown = client.get("/api/leaderboard", params={"retired": "show"}).json()
        hidden_csv = _csv_rows(client.get("/leaderboard.csv").text)
        shown_csv = client.get("/leaderboard.csv", params={"retired": "show"})
        page = client.get("/leaderboard").text
        wrong = client.get("/api/leaderboard", params={"retired": "maybe"})
    assert [m["model"] for m in hidden["models"]] == ["alpha-large", "beta-chat", "gamma-7b"]
    assert hidden["show_retired"] is False and shown["show_retired"] is True
    delta = shown["models"][3]
    assert delta["model"] == "delta-mini" and delta["status"] == "retired" and delta["retired_at"]
    assert [r["model"] for r in hidden_csv] == ["alpha-large", "beta-chat", "gamma-7b"]
    assert shown_csv.headers["x-arena-retired"] == "shown"
    retired_at = _csv_rows(shown_csv.text)[3]["retired_at"]
    assert datetime.fromisoformat(retired_at) == datetime.fromisoformat(delta["retired_at"])
    assert "Show retired (1 hidden)" in page
    assert 'class="col-model"><a href="/models/delta-mini' not in page
    assert 'class="col-model"><a href="/models/gamma-7b' in page
    assert wrong.status_code == 422


def test_rank_change_against_another_method(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        bt = client.get("/api/leaderboard").json()
        elo = client.get("/api/leaderboard", params={"method": "elo"}).json()
        compared = client.get("/api/leaderboard", params={"compare": "elo"})
        table = _csv_rows(client.get("/leaderboard.csv", params={"compare": "elo"}).text)
        page = client.get("/leaderboard", params={"compare": "elo"}).text
        plain = client.get("/api/leaderboard").json()
        wrong = client.get("/api/leaderboard", params={"compare": "glicko"})
    elo_rank = {m["model"]: m["rank"] for m in elo["models"]}
    body = compared.json()
    assert body["compare"] == "elo" and body["compared_snapshot"]["id"] == elo["snapshot"]["id"]
    assert compared.headers["x-arena-compared-snapshot-id"] == str(elo["snapshot"]["id"])
    changes = {m["model"]: m["rank_change"] for m in body["models"]}
    assert changes == {m["model"]: elo_rank[m["model"]] - m["rank"] for m in bt["models"]}
    assert [int(r["rank_change"]) for r in table] == [changes[r["model"]] for r in table]
    assert "Δ rank vs elo" in page
    assert all(m["rank_change"] is None for m in plain["models"])
    assert wrong.status_code == 422 and "glicko" in wrong.text


def test_deduplication_off_rates_the_held_back_duplicates_too(quiet_arena: Arena) -> None:
    counted = seed_held_back_duplicates(quiet_arena)
    ties = sum(v.winner.startswith("tie") for v in counted)
    with quiet_arena.client() as client:
        plain = client.get("/api/leaderboard").json()
        kept = client.get("/api/leaderboard", params={"dedup": "off"})
        assert kept.status_code == 200, kept.text
        body = kept.json()
        both = client.get("/api/leaderboard", params={"dedup": "off", "exclude": "ties"}).json()
        coding = client.get("/api/leaderboard", params={"category": "coding"}).json()
        coding_kept = client.get(
            "/api/leaderboard", params={"category": "coding", "dedup": "off"}
        ).json()
        table = client.get("/leaderboard.csv", params={"dedup": "off"})
        page = client.get("/leaderboard").text
        page_kept = client.get("/leaderboard", params={"dedup": "off"}).text
        wrong = client.get("/api/leaderboard", params={"dedup": "maybe"})
    assert plain["dedup"] is True and plain["dedup_off_stored"] is True
    assert plain["n_battles"] == plain["votes_total"] == 300
    assert body["dedup"] is False and body["n_battles"] == 340
    assert body["snapshot"]["view"] == "duplicates" == kept.headers["x-arena-view"]
    assert body["params"]["keep_duplicates"] is True and body["params"]["view"] == "duplicates"
    assert body["vote_set_hash"] != plain["vote_set_hash"]
    rating = {m["model"]: m["rating"] for m in plain["models"]}
    rating_kept = {m["model"]: m["rating"] for m in body["models"]}
    assert rating_kept["delta-mini"] > rating["delta-mini"]
    assert both["n_battles"] == 340 - ties and both["snapshot"]["view"] == "ties+duplicates"
    # The duplicates were all English prose: the coding table without deduplication is the
    # same votes, stored again under its view rather than computed again.
    assert coding_kept["snapshot"]["view"] == "duplicates"
    assert coding_kept["vote_set_hash"] == coding["vote_set_hash"]
    assert coding_kept["models"] == coding["models"]
    assert "with-duplicates" in table.headers["content-disposition"]
    assert 'data-dedup role="switch" aria-checked="true"' in page
    assert 'data-dedup role="switch" aria-checked="false"' in page_kept
    assert "held back because their prompt had been used more than 25 times" in page_kept
    assert "--keep-duplicates" in page_kept and "--keep-duplicates" not in page
    assert wrong.status_code == 422


def test_deduplication_off_is_refused_while_nothing_was_held_back(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        plain = client.get("/api/leaderboard").json()
        kept = client.get("/api/leaderboard", params={"dedup": "off"})
        page = client.get("/leaderboard").text
    assert plain["dedup"] is True and plain["dedup_off_stored"] is False
    assert kept.status_code == 422 and "would change nothing" in kept.text
    assert "data-dedup " not in page and "None has been yet" in page


def test_the_deduplication_switch_in_a_browser(
    quiet_arena: Arena, browser_page: BrowserPage
) -> None:
    seed_held_back_duplicates(quiet_arena)
    page = browser_page.page
    page.goto(f"{quiet_arena.url}/leaderboard?exclude=ties")
    switch = page.get_by_role("switch", name="Deduplicate prompts")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.click()
    page.wait_for_url("**dedup=off**")
    expect(switch).to_have_attribute("aria-checked", "false")
    expect(page.locator("[data-dedup-note]")).to_contain_text("are rated too")
    browser_page.screenshot("leaderboard-dedup-off.png", full_page=False)
    # The other toggles keep the choice: ties stay excluded, deduplication stays off.
    expect(page.get_by_role("switch", name="Exclude ties")).to_have_attribute(
        "aria-checked", "true"
    )
    page.get_by_role("switch", name="Exclude ties").click()
    page.wait_for_url("**/leaderboard?dedup=off")
    expect(switch).to_have_attribute("aria-checked", "false")
    switch.click()
    page.wait_for_url("**/leaderboard")
    expect(switch).to_have_attribute("aria-checked", "true")
    assert browser_page.console_errors == [] and browser_page.page_errors == []
