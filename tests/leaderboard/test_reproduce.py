"""A download re-rated by `arena ratings compute` gives the leaderboard's numbers exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Arena

ARENA = Path(sys.executable).parent / "arena"
ROW_FIELDS = ("model", "rating", "ci_lower", "ci_upper", "rank", "votes", "win_rate")


def _compute(battles: Path, *options: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(ARENA), "ratings", "compute", "--battles", str(battles), *options, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _close(found: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    """Row for row the same keys and texts, numbers equal to 1e-9 (relative)."""
    assert [list(f) for f in found] == [list(w) for w in wanted]
    for f, w in zip(found, wanted, strict=True):
        for key, value in w.items():
            if isinstance(value, float) and not isinstance(f[key], bool):
                assert f[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
            else:
                assert f[key] == value, key
    return True


def _options(snapshot: dict[str, Any]) -> list[str]:
    params = snapshot["params"]
    method = snapshot["method"]
    options = ["--method", method if method in ("elo", "bt-style") else "bt"]
    if params.get("bootstrap_rounds"):
        options += ["--bootstrap", str(params["bootstrap_rounds"]), "--seed", str(params["seed"])]
    if snapshot["category"] != "all":
        options += ["--category", snapshot["category"]]
    return options


@pytest.mark.parametrize(
    ("method", "category", "suffix"),
    [
        ("bt", "all", "jsonl"),
        ("bt-bootstrap", "all", "jsonl"),
        ("elo", "all", "csv"),
        ("bt", "language:German", "csv"),
        ("bt", "coding", "jsonl"),
        ("bt-bootstrap", "all", "parquet"),
        ("bt", "language:German", "parquet"),
        ("bt-style", "all", "jsonl"),
        ("bt-style", "all", "csv"),
        ("bt-style", "coding", "parquet"),
    ],
)
def test_cli_on_the_download_gives_the_leaderboard_exactly(
    rated_arena: Arena, tmp_path: Path, method: str, category: str, suffix: str
) -> None:
    with rated_arena.client() as client:
        board = client.get("/api/leaderboard", params={"method": method, "category": category})
        snapshot = board.json()["snapshot"]
        download = client.get(f"/battles.{suffix}", params={"snapshot": snapshot["id"]})
    battles = tmp_path / f"battles.{suffix}"
    battles.write_bytes(download.content)

    computed = _compute(battles, *_options(snapshot))

    expected = board.json()
    assert computed["vote_set_hash"] == expected["vote_set_hash"] == snapshot["vote_set_hash"]
    assert computed["n_battles"] == expected["n_battles"]
    rows = [{k: m[k] for k in ROW_FIELDS} for m in computed["models"]]
    wanted = [{k: m[k] for k in ROW_FIELDS} for m in expected["models"]]
    if method == "bt-style":
        # The style fit sums in blocks across threads: equal to rounding (1e-13 points seen),
        # not bit for bit; the coefficients too, from the conv_metadata of each battle.
        assert _close(rows, wanted) and _close(
            computed["style_coefficients"], expected["style_coefficients"]
        )
    else:
        assert rows == wanted
        assert expected["style_coefficients"] is None
    assert computed["params"] == expected["params"]
