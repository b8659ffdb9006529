"""What `make run` prints: what happened to the database, the demo models, the address to open."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from arena import migrate
from arena.listening import address_to_open
from arena.upstream.demo import DEMO_MODELS
from tests.servers import ARENA_COMMAND, arena_serve, free_port

# The newest migration and the one before it, as the migrations folder has them today.
_SCRIPTS = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
HEAD = str(_SCRIPTS.get_current_head())
BEFORE_HEAD = str(_SCRIPTS.get_revision(HEAD).down_revision)


def _db_upgrade(env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [*ARENA_COMMAND, "db", "upgrade"], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENA_")}
    # Narrow, so that a line rich would wrap shows as wrapped.
    return {**env, "COLUMNS": "50", **variables}


def test_db_upgrade_says_whether_it_created_upgraded_or_found_the_database(
    tmp_path: Path,
) -> None:
    env = _env(ARENA_DATA_DIR=str(tmp_path / "data"))
    where = tmp_path / "data" / "arena.db"
    said = _db_upgrade(env, tmp_path)
    assert said == f"created the database at {where} (schema {HEAD})\n"
    assert _db_upgrade(env, tmp_path) == f"the database at {where} is up to date (schema {HEAD})\n"

    older = tmp_path / "older.db"
    migrate.upgrade(f"sqlite:///{older}", BEFORE_HEAD)
    said = _db_upgrade(_env(ARENA_DATABASE_URL=f"sqlite:///{older}"), tmp_path)
    assert said == f"upgraded the database at {older} from schema {BEFORE_HEAD} to {HEAD}\n"


def test_db_upgrade_names_a_postgresql_database_without_its_password(
    postgres_database: str, tmp_path: Path
) -> None:
    url = make_url(postgres_database).set(password="s3cret-pw")
    # PostgreSQL on loopback trusts the test user, so the password is there only to be hidden.
    said = _db_upgrade(_env(ARENA_DATABASE_URL=url.render_as_string(hide_password=False)), tmp_path)
    assert "s3cret-pw" not in said
    assert said.startswith(f"the database at {url.render_as_string(hide_password=True)} is up")


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000/"),
        ("0.0.0.0", "http://127.0.0.1:8000/"),
        ("::", "http://[::1]:8000/"),
        ("::1", "http://[::1]:8000/"),
        ("localhost", "http://localhost:8000/"),
        ("192.0.2.7", "http://192.0.2.7:8000/"),
    ],
)
def test_the_address_to_open_is_one_a_browser_can_reach(host: str, url: str) -> None:
    assert address_to_open(host, 8000) == url


def test_serve_demo_prints_the_models_on_one_line_and_the_address_once_it_answers(
    tmp_path: Path,
) -> None:
    port, demo_port = free_port(), free_port()
    env = _env(
        ARENA_DATA_DIR=str(tmp_path / "data"),
        ARENA_PORT=str(port),
        ARENA_DEMO_PORT=str(demo_port),
    )
    output = tmp_path / "serve.log"
    with arena_serve(tmp_path, env, "--demo", output=output):
        deadline = time.monotonic() + 60
        while "The arena is ready" not in output.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = output.read_text().splitlines()
        (ready,) = [line for line in lines if line.startswith("The arena is ready")]
        (url,) = re.findall(r"open (\S+) in a browser", ready)
        page = httpx.get(url)
    assert url == f"http://127.0.0.1:{port}/"
    assert page.status_code == 200 and "<textarea" in page.text
    assert f"{url}owner" in ready and f"{url}docs" in ready
    # Said once the server answers, after uvicorn's own startup lines.
    startup = next(i for i, line in enumerate(lines) if "Application startup complete" in line)
    assert lines.index(ready) > startup

    names = ", ".join(model.name for model in DEMO_MODELS)
    assert f"demo endpoints at http://127.0.0.1:{demo_port}/v1: {names}" in lines
