"""The `arena` entry point: rating a battles file runs without the server's modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

RUN = (
    "import sys\n"
    "from arena.launcher import main\n"
    "sys.argv = ['arena', *sys.argv[1:]]\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    loaded = [m for m in ('fastapi', 'sqlalchemy', 'httpx', 'jinja2', 'arena.cli')"
    " if m in sys.modules]\n"
    "    print('LOADED=' + ','.join(loaded), file=sys.stderr)\n"
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN, *args], capture_output=True, text=True, timeout=120
    )


def test_rating_a_file_loads_no_server_module(tmp_path: Path) -> None:
    path = tmp_path / "battles.csv"
    pd.DataFrame(
        {
            "model_a": ["x", "y", "x", "y"],
            "model_b": ["y", "x", "y", "x"],
            "winner": ["model_a", "model_a", "model_b", "tie"],
        }
    ).to_csv(path, index=False)
    result = _run("ratings", "compute", "--battles", str(path), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [m["model"] for m in json.loads(result.stdout)["models"]] == [
        "y",
        "x",
    ]  # y won two and tied one
    assert "LOADED=\n" in result.stderr


def test_other_commands_go_through_the_whole_command() -> None:
    result = _run("ratings", "--help")
    assert result.returncode == 0, result.stderr
    assert "compute" in result.stdout and "recompute" in result.stdout
    assert "arena.cli" in result.stderr.split("LOADED=")[1]
