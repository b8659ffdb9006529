"""The README is the front door and docs/ the manual: links hold, every setting is described, and
the manual builds with MkDocs in strict mode (a broken link or a missing page fails)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from arena.config import Settings
from arena.settings_reference import GROUPS, settings_markdown, variable

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_two_commands_are_there() -> None:
    assert "make run" in README and "make test" in README


def test_the_readme_stays_a_front_door() -> None:
    lines = README.count("\n")
    assert lines <= 250, f"README.md has {lines} lines: the manual belongs in docs/"


def test_every_relative_link_of_the_readme_names_a_file() -> None:
    targets = re.findall(r"\]\(((?!https?:|#)[^)#]+)(?:#[^)]*)?\)", README)
    assert targets, "the README links to the manual"
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_every_setting_has_a_description_and_one_group() -> None:
    grouped = [name for _, names in GROUPS for name in names]
    duplicated = sorted({name for name in grouped if grouped.count(name) > 1})
    assert not duplicated, f"settings in more than one group: {duplicated}"
    assert set(grouped) - set(Settings.model_fields) == set(), "a group names no setting"
    ungrouped = [variable(n) for n in Settings.model_fields if n not in grouped]
    assert not ungrouped, f"add these to a group in arena/settings_reference.py: {ungrouped}"
    undescribed = [variable(n) for n, f in Settings.model_fields.items() if not f.description]
    assert not undescribed, f"give these a docstring in arena/config.py: {undescribed}"


def test_the_reference_lists_every_setting_once() -> None:
    table = settings_markdown()
    for name in Settings.model_fields:
        assert table.count(f"| `{variable(name)}` |") == 1, name


def test_the_manual_builds_strictly_and_holds_the_settings(tmp_path: Path) -> None:
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    settings_page = (site / "settings.html").read_text()
    missing = [variable(n) for n in Settings.model_fields if variable(n) not in settings_page]
    assert not missing, f"the built settings page lacks {missing}"
    # Built for reading offline: no page asks a CDN or a font service for anything.
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "fonts.googleapis.com" not in text and "cdn.jsdelivr" not in text, page
