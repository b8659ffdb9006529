"""The README is the user's manual: it names every setting and the two commands."""

from __future__ import annotations

from pathlib import Path

from arena.config import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_settings_table() -> None:
    missing = [f"ARENA_{name.upper()}" for name in Settings.model_fields]
    missing = [variable for variable in missing if f"`{variable}`" not in README]
    assert not missing, f"settings missing from the README: {missing}"


def test_the_two_commands_are_there() -> None:
    assert "make run" in README and "make test" in README
