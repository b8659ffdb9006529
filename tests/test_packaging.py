"""The wheel (what the Docker image installs) carries everything the service reads from disk."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

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
