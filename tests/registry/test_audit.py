"""The audit log: every operator action, through the admin API or the CLI, with who, when,
what, to what and why; readable by the operator only, exportable as spreadsheet-safe CSV."""

from __future__ import annotations

import csv
import io
import shutil
import sqlite3
import time
from pathlib import Path

from cryptography.fernet import Fernet
from typer.testing import CliRunner

from arena.cli import app as cli
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import ADMIN, register, sign_up


def _cli(arena: Arena, *args: str) -> str:
    env = {
        "ARENA_DATABASE_URL": arena.settings.database_url,
        "ARENA_DATA_DIR": str(arena.settings.data_dir),
        "ARENA_SECRET_KEY": arena.settings.resolved_secret_key(),
    }
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_operator_action_is_logged_with_its_reason(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    with arena.client() as client:
        token = sign_up(client, email="ada@example.org")
        register(client, token, fake_upstream.base_url, name="ada-7b")
        assert client.post("/api/admin/models/ada-7b/approve", headers=ADMIN).is_success
        owner_paused = client.post(
            "/api/models/ada-7b/pause",
            json={"reason": "owner's own pause"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert owner_paused.status_code == 200, owner_paused.text
        steps = [
            ("resume", None),
            ("pause", {"reason": '=HYPERLINK("http://evil.example")'}),
            ("retire", {"reason": "superseded"}),
        ]
        for action, body in steps:
            done = client.post(f"/api/admin/models/ada-7b/{action}", json=body, headers=ADMIN)
            assert done.is_success, done.text
        assert client.post("/api/admin/invites", json={"email": "bo@example.org"}, headers=ADMIN)
        assert client.post("/api/admin/owners/ada@example.org/token", headers=ADMIN).is_success
        assert client.post("/api/admin/owners/ada@example.org/revoke", headers=ADMIN).is_success
    _cli(arena, "owners", "invite", "cy@example.org")

    with arena.client() as client:
        assert client.get("/api/admin/audit").status_code == 401
        log = client.get("/api/admin/audit", headers=ADMIN).json()
        page = client.get("/api/admin/audit", params={"limit": 3}, headers=ADMIN).json()
        older = client.get(
            "/api/admin/audit", params={"limit": 3, "before_id": page[-1]["id"]}, headers=ADMIN
        ).json()
        refused = client.get("/api/admin/audit", params={"limit": 0}, headers=ADMIN)
        exported = client.get("/api/admin/audit.csv", headers=ADMIN)

    assert [(e["actor"].split(":")[0], e["action"], e["target"]) for e in log] == [
        ("cli", "invite.create", "cy@example.org"),
        ("admin", "owner.revoke", "ada@example.org"),
        ("admin", "owner.new_token", "ada@example.org"),
        ("admin", "invite.create", "bo@example.org"),
        ("admin", "model.retire", "ada-7b"),
        ("admin", "model.pause", "ada-7b"),
        ("admin", "model.resume", "ada-7b"),
        ("admin", "model.approve", "ada-7b"),
    ], "newest first, and an owner's own pause is not an operator action"
    assert log[4]["reason"] == "superseded" and log[6]["reason"] == "resumed by the operator"
    assert [e["id"] for e in page + older] == [e["id"] for e in log[:6]]
    assert refused.status_code == 422

    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["id", "time", "actor", "action", "target", "reason"]
    assert [row[3] for row in rows[1:]] == [e["action"] for e in reversed(log)]
    pause_reason = next(row[5] for row in rows[1:] if row[3] == "model.pause")
    assert pause_reason.startswith("'="), "a formula in a reason is neutralised"

    listed = _cli(arena, "audit", "list", "--limit", "2")
    assert "invite.create" in listed and "owner.revoke" in listed and "retire" not in listed
    whole = _cli(arena, "audit", "list", "--csv")
    assert whole.splitlines()[0] == "id,time,actor,action,target,reason"
    assert len(whole.splitlines()) == len(log) + 1


def test_reading_commands_do_not_wait_for_sqlite_s_write_lock(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """A listing reads only: while a writer holds SQLite's write lock (a busy arena), it answers
    at once instead of queueing behind the writer for the busy timeout. (PostgreSQL readers
    never wait for writers.)"""
    path = tmp_path / "arena.db"
    shutil.copyfile(sqlite_template, path)
    env = {
        "ARENA_DATABASE_URL": f"sqlite:///{path}",
        "ARENA_DATA_DIR": str(tmp_path),
        "ARENA_SECRET_KEY": Fernet.generate_key().decode(),
    }
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        for command in (["audit", "list", "--csv"], ["models", "list"], ["owners", "list"]):
            result = CliRunner().invoke(cli, command, env=env)
            assert result.exit_code == 0, result.output
        assert time.monotonic() - started < 10
    finally:
        writer.execute("ROLLBACK")
        writer.close()
