"""The style-controlled tables: made by the recompute from the stored style features, served by
/api/leaderboard?method=bt-style and the leaderboard page with their style coefficients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.conftest import Arena
from tests.leaderboard.conftest import SeedVote, add_models, recompute, seed_votes

EQUALS = ("alpha-large", "beta-chat", "gamma-7b", "delta-mini")
LONG = "Here is a thorough answer. " + "It goes on with one more careful sentence. " * 40
SHORT = "Short answer."


# How often each model answers at length: alpha-large mostly, delta-mini seldom.
LONG_SHARE = {"alpha-large": 0.85, "beta-chat": 0.5, "gamma-7b": 0.5, "delta-mini": 0.15}


def _length_biased_votes(n: int, *, seed: int = 3) -> list[SeedVote]:
    """Equally strong models whose voters favour the longer answer (log-odds 1.5 for it)."""
    rng = np.random.default_rng(seed)
    votes = []
    for i in range(n):
        a, b = rng.choice(len(EQUALS), size=2, replace=False)
        long_a = rng.random() < LONG_SHARE[EQUALS[a]]
        long_b = rng.random() < LONG_SHARE[EQUALS[b]]
        p_a = 1.0 / (1.0 + np.exp(-1.5 * (int(long_a) - int(long_b))))
        votes.append(
            SeedVote(
                EQUALS[a],
                EQUALS[b],
                "model_a" if rng.random() < p_a else "model_b",
                answer_a=LONG if long_a else SHORT,
                answer_b=LONG if long_b else SHORT,
                session=f"visitor-{i % 13}",
            )
        )
    return votes


@pytest.fixture
def styled_arena(quiet_arena: Arena) -> Arena:
    add_models(quiet_arena)
    votes = _length_biased_votes(600)
    # Erased before any style was worked out: no texts, no style; the plain tables count it.
    votes.append(SeedVote("alpha-large", "beta-chat", "model_a", erased=True))
    seed_votes(quiet_arena.settings.database_url, votes)
    outcome = recompute(quiet_arena)
    assert outcome.ran and not outcome.failed
    return quiet_arena


def test_bt_style_table_from_the_stored_style(styled_arena: Arena) -> None:
    with styled_arena.client() as client:
        plain = client.get("/api/leaderboard").json()
        styled_response = client.get("/api/leaderboard", params={"method": "bt-style"})
        matrices = client.get("/api/leaderboard/matrices", params={"method": "bt-style"})
    assert styled_response.status_code == 200
    styled = styled_response.json()
    assert styled_response.headers["x-arena-method"] == "bt-style"
    assert "bt-style" in styled["methods"] and "bt-style" in plain["methods"]
    assert styled["snapshot"]["method"] == styled["method"] == "bt-style"
    params = styled["params"]
    assert params["interval"] == "sandwich" and params["style_convention"] == "fastchat"
    assert params["style_elements"] == ["tokens", "headers", "lists", "bold"]
    assert params["battles_without_style"] == styled["battles_without_style"] == 1
    assert plain["battles_without_style"] is None and plain["style_coefficients"] is None
    # The erased battle counts in the plain table and is left out of the styled one.
    assert plain["n_battles"] == 601 and styled["n_battles"] == 600
    assert styled["vote_set_hash"] != plain["vote_set_hash"]

    coefficients = {c["element"]: c for c in styled["style_coefficients"]}
    assert list(coefficients) == ["tokens", "headers", "lists", "bold"]
    tokens = coefficients["tokens"]
    # Longer answers won more often than their (equal) models' strengths explain.
    assert tokens["ci_lower"] > 0 and tokens["coefficient"] > 0.5
    assert tokens["rating_points"] == pytest.approx(tokens["coefficient"] * 400 / np.log(10))
    assert tokens["odds_ratio"] == pytest.approx(np.exp(tokens["coefficient"]))
    assert tokens["odds_ratio_lower"] == pytest.approx(np.exp(tokens["ci_lower"]))
    assert tokens["odds_ratio_lower"] > 1 and tokens["feature_sd"] > 0
    # No answer has Markdown: those features never vary, so their coefficients are 0.
    for element in ("headers", "lists", "bold"):
        assert coefficients[element]["coefficient"] == 0
        assert coefficients[element]["feature_sd"] == 0

    # The models are equally strong; the plain table rewards alpha-large's long answers,
    # the style-controlled one mostly does not.
    def gap(board: dict[str, Any]) -> float:
        ratings = {r["model"]: r["rating"] for r in board["models"]}
        return float(ratings["alpha-large"] - ratings["delta-mini"])

    assert len(styled["models"]) == 4
    assert gap(plain) > 100 and abs(gap(styled)) < gap(plain) / 3
    assert matrices.status_code == 200 and len(matrices.json()["win_fraction"]) == 4


def test_leaderboard_page_shows_the_style_coefficients(styled_arena: Arena) -> None:
    with styled_arena.client() as client:
        page = client.get("/leaderboard", params={"method": "bt-style"})
        plain = client.get("/leaderboard")
        csv = client.get("/leaderboard.csv", params={"method": "bt-style"})
    assert page.status_code == 200
    html = page.text
    assert 'id="style-coefficients"' in html and 'data-element="tokens"' in html
    assert "Answer length (tokens)" in html and "Odds per sd" in html
    assert "Style-controlled Bradley-Terry, sandwich 95% intervals" in html
    assert "1 counted vote left out" in html
    assert "--method bt-style" in html  # the reproduce command
    assert 'id="style-coefficients"' not in plain.text
    assert 'data-method="bt-style"' in plain.text  # the method picker offers it
    assert csv.status_code == 200 and csv.headers["x-arena-method"] == "bt-style"
    assert 'filename="leaderboard-bt-style-all.csv"' in csv.headers["content-disposition"]


def test_model_page_and_json_under_bt_style(styled_arena: Arena) -> None:
    with styled_arena.client() as client:
        board = client.get("/api/leaderboard", params={"method": "bt-style"}).json()
        model = client.get("/api/leaderboard/models/alpha-large", params={"method": "bt-style"})
        page = client.get("/models/alpha-large", params={"method": "bt-style"})
    row = next(r for r in board["models"] if r["model"] == "alpha-large")
    assert model.status_code == 200 and model.json()["method"] == "bt-style"
    assert model.json()["current"]["rating"] == row["rating"]
    assert page.status_code == 200 and "Style-controlled Bradley-Terry" in page.text


def test_style_bootstrap_tables_when_configured(arena_factory: Callable[..., Arena]) -> None:
    """With ARENA_STYLE_BOOTSTRAP_ROUNDS the recompute stores a bt-style-bootstrap table of each
    category, plain view only: the full-data fit's ratings with bootstrap intervals, offered
    by the API and the page, and reproducible with the CLI options the page names."""
    arena = arena_factory(
        recompute_every_votes=10**9,
        recompute_every_seconds=3600.0,
        bootstrap_rounds=0,
        style_bootstrap_rounds=20,
    )
    add_models(arena)
    seed_votes(arena.settings.database_url, _length_biased_votes(400))
    outcome = recompute(arena)
    assert outcome.ran and not outcome.failed
    with arena.client() as client:
        sandwich = client.get("/api/leaderboard", params={"method": "bt-style"}).json()
        booted = client.get("/api/leaderboard", params={"method": "bt-style-bootstrap"})
        with_view = client.get(
            "/api/leaderboard", params={"method": "bt-style-bootstrap", "exclude": "ties"}
        )
        page = client.get("/leaderboard", params={"method": "bt-style-bootstrap"})
    assert booted.status_code == 200, booted.text
    board = booted.json()
    assert "bt-style-bootstrap" in board["methods"] and "bt-bootstrap" not in board["methods"]
    params = board["params"]
    assert params["interval"] == "bootstrap" and params["bootstrap_rounds"] == 20
    assert isinstance(params["seed"], int)
    ratings = {r["model"]: r["rating"] for r in board["models"]}
    assert ratings == pytest.approx({r["model"]: r["rating"] for r in sandwich["models"]})
    widths = [r["ci_upper"] - r["ci_lower"] for r in board["models"]]
    assert all(width > 0 for width in widths)
    assert {c["element"] for c in board["style_coefficients"]} >= {"tokens"}

    assert with_view.status_code == 422
    assert "stored without exclusions only" in with_view.json()["detail"]
    assert page.status_code == 200
    assert "Style-controlled Bradley-Terry, bootstrap 95% intervals" in page.text
    assert f"--method bt-style --bootstrap 20 --seed {params['seed']}" in page.text
