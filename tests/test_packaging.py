"""The wheel (what the Docker image installs) carries everything the service reads from disk, and
the lock files pin every dependency pyproject.toml names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_alone_migrates_a_database_and_serves_pages(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(wheel_dir), str(PROJECT_ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("arena-*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(installed)
    assert "arena/alembic.ini" in names
    assert any(name.startswith("arena/migrations/versions/") for name in names)
    assert any(name.startswith("arena/static/") for name in names)
    assert any(name.startswith("arena/templates/") for name in names)

    # From an empty folder, only the unpacked wheel on the path: no checkout to fall back on.
    workdir = tmp_path / "run"
    workdir.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(installed),
        "ARENA_DATA_DIR": str(workdir / "data"),
        "ARENA_DATABASE_URL": f"sqlite:///{workdir / 'arena.db'}",
    }
    script = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "import arena\n"
        "assert arena.__file__.startswith(sys.argv[1]), arena.__file__\n"
        "from arena.cli import app\n"
        "try:\n"
        "    app(['db', 'upgrade'])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "from arena.app import create_app\n"
        "with TestClient(create_app()) as client:\n"
        "    assert client.get('/healthz').status_code == 200\n"
        "    page = client.get('/')\n"
        "    assert page.status_code == 200 and '<textarea' in page.text, page.text[:200]\n"
        "    assert client.get('/static/js/battle.js').status_code == 200\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(installed)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


LOCKS = {"requirements.lock": (), "requirements-dev.lock": ("dev",)}
_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


def _pins(lock: Path) -> dict[str, list[Version]]:
    """Every package the lock pins, with its versions (a universal lock may pin one per
    Python version or platform)."""
    pins: dict[str, list[Version]] = {}
    for name, version in _PINNED.findall(lock.read_text()):
        pins.setdefault(canonicalize_name(name), []).append(Version(version))
    return pins


@pytest.mark.parametrize(("lock_name", "extras"), LOCKS.items())
def test_the_lock_pins_every_dependency_of_pyproject(
    lock_name: str, extras: tuple[str, ...]
) -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(text) for text in project["dependencies"]]
    for extra in extras:
        wanted += [Requirement(text) for text in project["optional-dependencies"][extra]]
    pins = _pins(PROJECT_ROOT / lock_name)
    stale = []
    for requirement in wanted:
        versions = pins.get(canonicalize_name(requirement.name), [])
        if not versions or not all(requirement.specifier.contains(v) for v in versions):
            stale.append(f"{requirement} (locked: {', '.join(map(str, versions)) or 'nothing'})")
    assert stale == [], (
        f"{lock_name} does not satisfy pyproject.toml for: {'; '.join(stale)}. "
        "Run `make lock` and commit the lock files."
    )
    assert "--hash=sha256:" in (PROJECT_ROOT / lock_name).read_text()


def test_every_pin_carries_a_hash() -> None:
    for lock_name in LOCKS:
        text = (PROJECT_ROOT / lock_name).read_text()
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        unhashed = [e.split()[0] for e in entries if "==" in e and "--hash=sha256:" not in e]
        assert unhashed == [], f"{lock_name}: {unhashed}; run `make lock`"
