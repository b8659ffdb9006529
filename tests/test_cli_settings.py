"""A bad setting stops every command before it starts, naming the variable at fault."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from arena.cli import app


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ARENA_PORT", "0", "ARENA_PORT: Input should be greater than or equal to 1"),
        ("ARENA_WORKERS", "many", "ARENA_WORKERS: Input should be a valid integer"),
        ("ARENA_IDLE_TIMEOUT", "-3", "ARENA_IDLE_TIMEOUT: Input should be greater than 0"),
    ],
)
def test_a_bad_setting_is_named_in_one_line(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    env = {variable: value, "ARENA_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "arena.db").exists()
