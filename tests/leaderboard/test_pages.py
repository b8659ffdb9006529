"""/leaderboard and /models/{name} through real HTTP: content, categories, sorting, errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import ModelStatus, RatingSnapshot
from arena.registry import service as registry
from tests.conftest import Arena
from tests.leaderboard.conftest import (
    SeedVote,
    add_models,
    latest_board,
    recompute,
    seed_votes,
)


def _text(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def _table_models(html: str) -> list[str]:
    body = html.split('id="leaderboard-table"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<th scope="row" class="col-model"><a href="[^"]+">([^<]+)</a>', body)


def _retire(arena: Arena, name: str, reason: str) -> None:
    async def work(session: AsyncSession) -> None:
        model = await registry.model_by_name(session, name)
        await registry.set_status(
            session, model=model, status=ModelStatus.retired, reason=reason, actor="test"
        )

    arena.db(work)


def test_empty_state_before_any_vote(quiet_arena: Arena) -> None:
    add_models(quiet_arena)
    with quiet_arena.client() as client:
        page = client.get("/leaderboard")
        api = client.get("/api/leaderboard").json()
        csv = client.get("/leaderboard.csv")
    assert page.status_code == 200
    text = _text(page.text)
    assert "No ratings yet" in text and "Nobody has voted yet" in text
    assert 'id="leaderboard-table"' not in page.text
    assert api["snapshot"] is None and api["models"] == [] and api["votes_total"] == 0
    assert csv.status_code == 200 and csv.text.splitlines() == [
        "rank,model,rating,ci_lower,ci_upper,votes,win_rate,swap_votes,first_place_votes,"
        "organization,license,status,activated_at,paused_at,retired_at,rank_change"
    ]
    assert csv.headers["x-arena-snapshot"] == "none"


def test_too_few_votes_say_so(quiet_arena: Arena) -> None:
    add_models(quiet_arena)
    seed_votes(quiet_arena.settings.database_url, [SeedVote("alpha-large", "beta-chat", "model_a")])
    recompute(quiet_arena)
    with quiet_arena.client() as client:
        text = _text(client.get("/leaderboard").text)
    assert "No ratings yet" in text
    assert "a rated model needs at least one win and one loss" in text
    assert "1 counted vote in it so far" in text


def test_leaderboard_page_shows_the_snapshot(rated_arena: Arena) -> None:
    _retire(rated_arena, "delta-mini", "superseded by delta-2")
    with rated_arena.client() as client:
        # Retired models are hidden unless asked for (tests/leaderboard/test_views.py).
        page = client.get("/leaderboard", params={"retired": "show"})
        api = client.get("/api/leaderboard", params={"retired": "show"}).json()
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    text = _text(html)
    assert _table_models(html) == ["alpha-large", "beta-chat", "gamma-7b", "delta-mini"]
    for header in ("Rank (UB)", "Model", "Rating", "95% CI", "Votes", "Organisation", "Licence"):
        assert header in text
    for fact in ("Alpha Labs", "Apache-2.0", "Beta Inc", "MIT", "Llama 3", "Proprietary"):
        assert fact in text
    first = api["models"][0]
    assert f"{first['rating']:.1f}" in text
    ci = f"+{first['ci_upper'] - first['rating']:.1f} / −{first['rating'] - first['ci_lower']:.1f}"
    assert ci in text
    # Retired models keep their place, marked with dates.
    assert re.search(r"retired on \d{4}-\d\d-\d\d, active from \d{4}-\d\d-\d\d", text)
    assert api["models"][3]["status"] == "retired" and api["models"][3]["retired_at"]
    # The newcomer that has only lost is listed, not rated.
    assert "Not rated yet" in text and "newcomer (2 votes)" in text
    # Under the table: snapshot time, method, vote count and the full vote-set hash.
    snapshot = api["snapshot"]
    assert snapshot["vote_set_hash"] in html and "400" in text
    assert "Bradley-Terry, sandwich 95% intervals" in text
    assert snapshot["computed_at"][:16].replace("T", " ") in text
    # Plots rendered on the server as inline SVG.
    for figure in ("plot-ratings", "plot-win-fraction", "plot-battle-count", "plot-sampling-share"):
        assert re.search(rf'id="{figure}">.*?<svg[^>]*role="img"', html, re.S), figure
    assert "<script" not in html


def test_category_and_method_pickers(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        page = client.get("/leaderboard").text
        for label in ("All", "Coding", "Long prompts", "Multi-turn", "English", "German"):
            assert f">{label}</a>" in page
        assert 'href="/leaderboard?category=language%3AGerman"' in page
        german = client.get("/leaderboard", params={"category": "language:German"})
        by_name = client.get("/leaderboard", params={"category": "german"})
        elo = client.get("/api/leaderboard", params={"method": "elo", "category": "coding"})
    assert german.status_code == 200 and by_name.status_code == 200
    assert "German · Bradley-Terry" in _text(german.text)
    assert german.headers["x-arena-category"] == "language:German"
    body = elo.json()
    assert body["method"] == "elo" and body["category"] == "coding"
    assert body["params"]["category"] == "coding" and body["params"]["interval"] is None
    assert all(m["ci_lower"] is None for m in body["models"])


def test_sorting_by_a_column(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        api = client.get("/api/leaderboard").json()
        by_votes = client.get("/leaderboard", params={"sort": "votes", "order": "asc"}).text
        by_name = client.get("/leaderboard", params={"sort": "model", "order": "desc"}).text
    votes = {m["model"]: m["votes"] for m in api["models"]}
    assert _table_models(by_votes) == sorted(votes, key=lambda m: (votes[m], m))
    assert _table_models(by_name) == sorted(votes, reverse=True)
    assert 'aria-sort="ascending"' in by_votes


def test_unknown_category_or_method_is_422_naming_the_allowed_values(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        bad_category = client.get("/api/leaderboard", params={"category": "poetry"})
        bad_method = client.get("/leaderboard.csv", params={"method": "glicko"})
        bad_page = client.get("/leaderboard", params={"category": "language:Klingon"})
    assert bad_category.status_code == 422
    detail = bad_category.json()["detail"]
    assert "'poetry'" in detail
    for allowed in ("all", "coding", "long", "multi-turn", "language:English", "language:German"):
        assert allowed in detail
    assert bad_method.status_code == 422
    assert "bt, bt-bootstrap, bt-style, elo" in bad_method.json()["detail"]
    assert bad_page.status_code == 422 and "text/html" in bad_page.headers["content-type"]
    assert "language:Klingon" in _text(bad_page.text)


def test_model_page(rated_arena: Arena) -> None:
    recompute(rated_arena)
    with rated_arena.client() as client:
        page = client.get("/models/alpha-large")
        data = client.get("/api/leaderboard/models/alpha-large").json()
    assert page.status_code == 200
    text = _text(page.text)
    assert "alpha-large" in text and "Alpha Labs" in text and "Apache-2.0" in text
    assert f"{data['current']['rating']:.1f}" in text
    assert "Rank (UB)" in text and "1 of 4" in text
    # Win rate against each opponent, with the number of battles.
    assert {o["model"] for o in data["opponents"]} == {"beta-chat", "gamma-7b", "delta-mini"}
    for opponent in data["opponents"]:
        assert opponent["battles"] > 0 and 0 <= opponent["win_fraction"] <= 1
        assert opponent["model"] in text
    assert 0 < data["vote_share"] < 1 and 0 < data["sampling_share"] < 1
    assert data["status_history"][0]["status"] == "active"
    assert "Status history" in text and "registered" in text


def test_retired_model_keeps_its_page(rated_arena: Arena) -> None:
    _retire(rated_arena, "delta-mini", "superseded by delta-2")
    with rated_arena.client() as client:
        page = client.get("/models/delta-mini")
        data = client.get("/api/leaderboard/models/delta-mini").json()
    assert page.status_code == 200
    text = _text(page.text)
    assert "superseded by delta-2" in text and "retired on" in text
    assert data["current"]["rating"] > 0 and data["retired_at"]
    assert [s["status"] for s in data["status_history"]] == ["active", "retired"]


def test_unrated_and_unknown_models(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        newcomer = client.get("/models/newcomer")
        missing = client.get("/models/no-such-model")
        missing_json = client.get("/api/leaderboard/models/no-such-model")
    assert newcomer.status_code == 200
    assert "not rated yet" in _text(newcomer.text)
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]
    assert "No model named “no-such-model”" in _text(missing.text)
    assert missing_json.status_code == 404 and "no-such-model" in missing_json.json()["detail"]


def test_pages_follow_a_new_snapshot(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        before = client.get("/api/leaderboard").json()["snapshot"]["id"]
        seed_votes(
            rated_arena.settings.database_url,
            [SeedVote("gamma-7b", "alpha-large", "model_a")] * 3,
        )
        recompute(rated_arena)
        after = latest_board(client, newer_than=before)
        page = client.get("/leaderboard")
    assert after["snapshot"]["id"] != before and after["n_battles"] == 403
    assert page.headers["x-arena-snapshot-id"] == str(after["snapshot"]["id"])


def test_model_page_draws_the_rating_over_time(rated_arena: Arena) -> None:
    """An older snapshot (a day back, beyond the thinning of recent history) and the current
    one: the model page draws the line between them."""

    async def older(session: AsyncSession) -> None:
        current = await session.scalar(
            select(RatingSnapshot)
            .where(
                RatingSnapshot.method == "bt",
                RatingSnapshot.category == "all",
                RatingSnapshot.view == "",
            )
            .order_by(RatingSnapshot.computed_at.desc())
            .limit(1)
        )
        assert current is not None
        rows = [{**r, "rating": r["rating"] - 25.0} for r in current.rows]
        session.add(
            RatingSnapshot(
                computed_at=current.computed_at - timedelta(days=1),
                method="bt",
                category="all",
                params=current.params,
                vote_set_hash="an-older-vote-set",
                n_votes=current.n_votes - 50,
                rows=rows,
            )
        )

    rated_arena.db(older)
    with rated_arena.client() as client:
        page = client.get("/models/gamma-7b").text
        history = client.get("/api/leaderboard/models/gamma-7b").json()["history"]
    assert len(history) == 2 and history[0]["at"] < history[1]["at"]
    assert history[1]["rating"] - history[0]["rating"] == pytest.approx(25.0)
    assert "Rating over time" in _text(page)
    assert re.search(r'id="plot-history">.*?<svg[^>]*role="img"', page, re.S)


def test_paused_models_show_since_when(rated_arena: Arena) -> None:
    async def pause(session: AsyncSession) -> None:
        model = await registry.model_by_name(session, "beta-chat")
        await registry.set_status(
            session, model=model, status=ModelStatus.paused, reason="maintenance", actor="test"
        )

    rated_arena.db(pause)
    with rated_arena.client() as client:
        text = _text(client.get("/leaderboard").text)
        row = next(
            m for m in client.get("/api/leaderboard").json()["models"] if m["model"] == "beta-chat"
        )
    assert row["status"] == "paused" and row["paused_at"]
    assert re.search(r"beta-chat .*? paused since \d{4}-\d\d-\d\d", text)


def test_page_counts_excluded_votes_by_reason_and_shows_sampling(quiet_arena: Arena) -> None:
    add_models(quiet_arena)
    recent = datetime.now(UTC) - timedelta(days=2)
    votes = [SeedVote("alpha-large", "beta-chat", "model_a", at=recent)] * 3
    votes += [SeedVote("gamma-7b", "beta-chat", "model_b", counted=False, at=recent)] * 2
    seed_votes(quiet_arena.settings.database_url, votes)
    recompute(quiet_arena)
    with quiet_arena.client() as client:
        html = client.get("/leaderboard").text
    text = re.sub(r" ([,.)])", r"\1", _text(html))
    assert "5 votes cast: 3 counted, 2 excluded and kept for review" in text
    excluded = html.split('id="excluded-votes"', 1)[1].split("</table>", 1)[0]
    assert "suspicious_session" in excluded and "improbable under the current ratings" in excluded
    sampling = _text(html.split('id="sampling-table"', 1)[1].split("</table>", 1)[0])
    # Five battles, ten places: beta-chat sat in all of them (50%), alpha in 3, gamma in 2.
    assert "beta-chat active" in sampling and "50.0% (5) 50.0% (5)" in sampling
    assert "alpha-large" in sampling and "30.0% (3)" in sampling
    assert "gamma-7b" in sampling and "20.0% (2)" in sampling


def test_votes_that_were_all_excluded_are_not_called_no_votes(quiet_arena: Arena) -> None:
    add_models(quiet_arena)
    seed_votes(
        quiet_arena.settings.database_url,
        [SeedVote("alpha-large", "beta-chat", "model_a", counted=False)] * 4,
    )
    recompute(quiet_arena)
    with quiet_arena.client() as client:
        text = re.sub(r" ([,.)])", r"\1", _text(client.get("/leaderboard").text))
    assert "Nobody has voted yet" not in text
    assert "4 votes have been cast, but none counts yet: all were excluded and kept" in text
    assert "4 votes cast: 0 counted, 4 excluded and kept for review" in text


def test_the_page_says_the_table_lags_the_votes_and_why(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        in_table = client.get("/api/leaderboard").json()
    rated = in_table["votes_total"]
    seed_votes(
        rated_arena.settings.database_url,
        [SeedVote("alpha-large", "beta-chat", "model_a", at=datetime.now(UTC))] * 7,
    )
    with rated_arena.client() as client:
        text = re.sub(r" ([,.)])", r"\1", _text(client.get("/leaderboard").text))
    computed = in_table["snapshot"]["computed_at"][:16].replace("T", " ")
    assert f"{rated:,} counted votes in these ratings, computed {computed}" in text
    assert "7 counted votes have come in since; the next recompute will include them." in text
    assert f"{rated + 7:,} counted" in text
    assert (
        f"The ratings above count {rated:,} of them: they are as of their computation, and the "
        "next recompute will include the 7 newer." in text
    )
    assert "counted votes so far" not in text


def test_thin_bootstrap_says_how_many_resamples_had_no_fit(quiet_arena: Arena) -> None:
    add_models(quiet_arena)
    names = ["alpha-large", "beta-chat", "gamma-7b"]
    # A beats B, B beats A, and so on round the three: each model wins and loses, but barely.
    cycle = [(a, b) for a in names for b in names if a != b] * 2
    seed_votes(quiet_arena.settings.database_url, [SeedVote(a, b, "model_a") for a, b in cycle])
    recompute(quiet_arena)
    with quiet_arena.client() as client:
        board = client.get("/api/leaderboard", params={"method": "bt-bootstrap"}).json()
        html = client.get("/leaderboard", params={"method": "bt-bootstrap"}).text
        plain = client.get("/leaderboard", params={"method": "bt"}).text
    params = board["snapshot"]["params"]
    redrawn, rounds = params["bootstrap_redrawn"], params["bootstrap_rounds"]
    assert redrawn > 0 and rounds == 20
    shown = _text(html.split('id="bootstrap-redrawn"', 1)[1].split("</div>", 1)[0])
    assert f"{redrawn} of {redrawn + rounds} resamples had no finite fit" in shown
    assert "read them as rough" in shown
    assert 'id="bootstrap-redrawn"' not in plain
