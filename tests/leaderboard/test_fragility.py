"""Fragility figures through the recompute, the JSON, the CSV and the page (both databases)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pandas as pd
from playwright.sync_api import expect

from arena.ratings import compute_leaderboard, read_battles_file
from tests.browser import BrowserPage
from tests.conftest import Arena

HOLDS = re.compile(r"holds unless ([\d,]+) votes? (?:is|are) removed")


def _without(battles: pd.DataFrame, removals: list[dict[str, Any]]) -> pd.DataFrame:
    """The battles less the votes a fragility figure names."""
    dropped: list[int] = []
    a, b, winner = battles["model_a"], battles["model_b"], battles["winner"]
    for removal in removals:
        one, other = removal["models"]
        pair = ((a == one) & (b == other)) | ((a == other) & (b == one))
        if removal["winner"] is None:
            won = winner.isin(["tie", "tie (bothbad)"])
        else:
            won = ((a == removal["winner"]) & (winner == "model_a")) | (
                (b == removal["winner"]) & (winner == "model_b")
            )
        rows = battles.index[(pair & won).to_numpy()]
        assert len(rows) >= removal["count"]
        dropped.extend(rows[: removal["count"]])
    return battles.drop(index=dropped).reset_index(drop=True)


def test_json_names_votes_whose_removal_swaps_the_table(rated_arena: Arena, tmp_path: Path) -> None:
    with rated_arena.client() as client:
        bt = client.get("/api/leaderboard").json()
        bootstrap = client.get("/api/leaderboard", params={"method": "bt-bootstrap"}).json()
        elo = client.get("/api/leaderboard", params={"method": "elo"}).json()
        download = client.get("/battles.jsonl", params={"snapshot": bt["snapshot"]["id"]})
    fragility = bt["fragility"]
    models = [m["model"] for m in bt["models"]]
    assert fragility["method"] == "amip-refit"
    assert [(s["above"], s["below"]) for s in fragility["adjacent"]] == list(
        zip(models, models[1:], strict=False)
    )
    assert [m["swap_votes"] for m in bt["models"]] == [
        *(s["votes"] for s in fragility["adjacent"]),
        None,
    ]
    first = fragility["first_place"]
    assert first["above"] == models[0] and first["below"] in models[1:]
    assert all(s["votes"] is not None and s["votes"] > 0 for s in fragility["adjacent"])
    assert first["votes"] <= fragility["adjacent"][0]["votes"]
    # The bootstrap table keeps the full-data ratings, so the same order and figures; online Elo
    # has none.
    assert bootstrap["fragility"] == fragility
    assert [m["swap_votes"] for m in bootstrap["models"]] == [m["swap_votes"] for m in bt["models"]]
    assert elo["fragility"] is None and all(m["swap_votes"] is None for m in elo["models"])

    # Re-rated without the votes named, the snapshot's own download puts each challenger above.
    battles_file = tmp_path / "battles.jsonl"
    battles_file.write_bytes(download.content)
    battles = read_battles_file(battles_file).battles
    for swap in [first, *fragility["adjacent"]]:
        order = [r.model for r in compute_leaderboard(_without(battles, swap["removals"])).rows]
        assert order.index(swap["below"]) < order.index(swap["above"]), swap


def test_csv_carries_the_figures(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        body = client.get("/api/leaderboard", params={"category": "coding"}).json()
        csv = client.get("/leaderboard.csv", params={"category": "coding"})
    table = pd.read_csv(io.StringIO(csv.text), dtype={"swap_votes": "Int64"})
    assert list(table["swap_votes"].astype(object).where(table["swap_votes"].notna(), None)) == [
        m["swap_votes"] for m in body["models"]
    ]
    first = body["fragility"]["first_place"]
    assert table["first_place_votes"].iloc[0] == first["votes"]
    assert table["first_place_votes"].iloc[1:].isna().all()


def test_page_says_what_holds_each_rank(rated_arena: Arena, browser_page: BrowserPage) -> None:
    with rated_arena.client() as client:
        body = client.get("/api/leaderboard").json()
    page = browser_page.page
    page.goto(f"{rated_arena.url}/leaderboard")
    first = body["fragility"]["first_place"]
    sentence = page.locator("#first-place-fragility")
    expect(sentence).to_be_visible()
    expect(sentence).to_contain_text(f"First place: {first['above']}")
    expect(sentence).to_contain_text(f"(then {first['below']} overtakes it)")
    match = HOLDS.search(sentence.inner_text())
    assert match is not None and int(match.group(1).replace(",", "")) == first["votes"]

    cells = page.locator("#leaderboard-table tbody td.col-holds")
    expect(cells).to_have_count(len(body["models"]))
    texts = cells.all_inner_texts()
    for text, row in zip(texts[:-1], body["models"], strict=False):
        match = HOLDS.fullmatch(text.strip())
        assert match is not None and int(match.group(1).replace(",", "")) == row["swap_votes"]
    assert texts[-1].strip() == "—"
    expect(page.get_by_role("columnheader", name="Above the next")).to_be_visible()
    browser_page.screenshot("leaderboard-fragility.png")

    page.get_by_role("navigation", name="Method").get_by_role("link", name="Online Elo").click()
    page.wait_for_url("**method=elo**")
    expect(page.locator("#first-place-fragility")).to_have_count(0)
    expect(page.locator("#leaderboard-table tbody td.col-holds").first).to_have_text("—")
    assert browser_page.console_errors == [] and browser_page.page_errors == []
