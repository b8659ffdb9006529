"""The operator's side: admin API and CLI for approval, lifecycle with reasons, owners, invites."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from arena.cli import app as cli
from arena.models import ModelStatusEvent
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import ADMIN, bearer, register, sign_up


def test_admin_lists_pending_and_steers_models_with_kept_reasons(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("house/model-1", fake_upstream.base_url)
    with arena.client() as client:
        token = sign_up(client, email="ada@example.org")
        register(client, token, fake_upstream.base_url, name="ada-7b", api_key="sk-abcdef-1234")
        pending = client.get("/api/admin/models", params={"status": "pending"}, headers=ADMIN)
        assert [m["name"] for m in pending.json()] == ["ada-7b"]
        assert pending.json()[0]["owner_email"] == "ada@example.org"
        assert pending.json()[0]["api_key_last4"] == "1234"
        every = client.get("/api/admin/models", headers=ADMIN).json()
        assert {m["name"] for m in every} == {"ada-7b", "house/model-1"}

        assert client.post("/api/admin/models/ada-7b/approve", headers=ADMIN).status_code == 200
        again = client.post("/api/admin/models/ada-7b/approve", headers=ADMIN)
        assert again.status_code == 409

        no_reason = client.post("/api/admin/models/ada-7b/pause", json={}, headers=ADMIN)
        assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
        for action in ("pause", "retire"):
            no_body = client.post(f"/api/admin/models/ada-7b/{action}", headers=ADMIN)
            assert no_body.status_code == 422, no_body.text
            assert no_body.json()["detail"].startswith("reason: ")
            empty = client.post(
                f"/api/admin/models/ada-7b/{action}", json={"reason": ""}, headers=ADMIN
            )
            assert empty.status_code == 422 and "reason" in empty.json()["detail"]
        paused = client.post(
            "/api/admin/models/ada-7b/pause", json={"reason": "answers in Klingon"}, headers=ADMIN
        )
        assert paused.status_code == 200 and paused.json()["status_reason"] == "answers in Klingon"
        # A name with a slash (from the CLI) is reachable too.
        house = client.post(
            "/api/admin/models/house/model-1/retire", json={"reason": "superseded"}, headers=ADMIN
        )
        assert house.status_code == 200 and house.json()["status"] == "retired"
        assert client.post("/api/admin/models/ada-7b/resume", headers=ADMIN).status_code == 200
        retired = client.post(
            "/api/admin/models/ada-7b/retire", json={"reason": "owner asked"}, headers=ADMIN
        )
        assert retired.json()["status"] == "retired"
        assert client.post("/api/admin/models/ada-7b/resume", headers=ADMIN).status_code == 409
        missing = client.post("/api/admin/models/nobody/approve", headers=ADMIN)
        assert missing.status_code == 404

        # The owner sees the operator's reasons in its stats.
        events = client.get("/api/models/ada-7b/stats", headers=bearer(token)).json()["events"]
        assert [(e["status"], e["actor"], e["reason"]) for e in events] == [
            ("retired", "admin", "owner asked"),
            ("active", "admin", "resumed by the operator"),
            ("paused", "admin", "answers in Klingon"),
            ("active", "admin", "approved"),
            ("pending", "owner:1", "registered"),
        ]

    async def kept(session: AsyncSession) -> int:
        return len((await session.scalars(select(ModelStatusEvent))).all())

    assert arena.db(kept) == 7  # five for ada-7b, two for the house model


def test_admin_owners_and_invites(arena: Arena, fake_upstream: FakeUpstream) -> None:
    with arena.client() as client:
        token = sign_up(client, email="ada@example.org")
        register(client, token, fake_upstream.base_url)
        owners = client.get("/api/admin/owners", headers=ADMIN).json()
        assert [(o["email"], o["models"], o["revoked_at"]) for o in owners] == [
            ("ada@example.org", 1, None)
        ]
        invite = client.post("/api/admin/invites", json={"email": "bob@example.org"}, headers=ADMIN)
        assert invite.status_code == 201 and len(invite.json()["code"]) >= 16
        assert client.post("/api/admin/owners/999/revoke", headers=ADMIN).status_code == 404


def _cli(args: list[str], arena: Arena, data_dir: Path) -> str:
    env = {
        "ARENA_DATABASE_URL": arena.settings.database_url,
        "ARENA_DATA_DIR": str(data_dir),
        "ARENA_SECRET_KEY": arena.settings.resolved_secret_key(),
    }
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_operator_cli(
    arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    arena = arena_factory(open_signup=False, auth_failures_per_minute=100)

    printed = _cli(["owners", "invite", "ada@example.org"], arena, tmp_path)
    code = printed.strip().splitlines()[-1]
    with arena.client() as client:
        created = client.post(
            "/api/owners", json={"name": "Ada", "email": "ada@example.org", "invite_code": code}
        )
        assert created.status_code == 201, created.text
        token = created.json()["token"]
        assert register(client, token, fake_upstream.base_url).status_code == 201

    assert "ada-7b" in _cli(["models", "list", "--status", "pending"], arena, tmp_path)
    assert "ada-7b is now active" in _cli(
        ["models", "approve", "ada-7b", "--reason", "looks good"], arena, tmp_path
    )
    assert "ada-7b" not in _cli(["models", "list", "--status", "pending"], arena, tmp_path)
    listed = _cli(["owners", "list"], arena, tmp_path)
    assert "ada@example.org" in listed and token not in listed

    assert "revoked" in _cli(["owners", "revoke", "ada@example.org"], arena, tmp_path)
    with arena.client() as client:
        assert client.get("/api/owners/me", headers=bearer(token)).status_code == 401
    fresh = _cli(["owners", "new-token", "1"], arena, tmp_path).strip().splitlines()[-1]
    with arena.client() as client:
        assert client.get("/api/owners/me", headers=bearer(fresh)).status_code == 200

    # Pause, resume and retire from the CLI: each reason is kept and shown to the owner, and a
    # model the operator paused stays paused until the operator resumes it.
    assert "ada-7b is now paused" in _cli(
        ["models", "pause", "ada-7b", "--reason", "answers in Klingon"], arena, tmp_path
    )
    with arena.client() as client:
        mine = client.get("/api/models/ada-7b", headers=bearer(fresh)).json()
        assert mine["status_reason"] == "answers in Klingon"
        refused = client.post("/api/models/ada-7b/resume", headers=bearer(fresh))
        assert refused.status_code == 403 and "answers in Klingon" in refused.json()["detail"]
    assert "ada-7b is now active" in _cli(["models", "resume", "ada-7b"], arena, tmp_path)
    assert "ada-7b is now retired" in _cli(
        ["models", "retire", "ada-7b", "--reason", "superseded by ada-8b"], arena, tmp_path
    )
    with arena.client() as client:
        events = client.get("/api/models/ada-7b/stats", headers=bearer(fresh)).json()["events"]
    assert [(e["status"], e["actor"], e["reason"]) for e in events[:4]] == [
        ("retired", "cli", "superseded by ada-8b"),
        ("active", "cli", "resumed by the operator"),
        ("paused", "cli", "answers in Klingon"),
        ("active", "cli", "looks good"),
    ]
    assert "retired" in _cli(["models", "list"], arena, tmp_path)

    wrong = CliRunner().invoke(
        cli,
        ["models", "approve", "ada-7b"],
        env={"ARENA_DATABASE_URL": arena.settings.database_url},
    )
    assert wrong.exit_code == 2 and "only a pending model" in wrong.output, wrong.output
    bad_email = CliRunner().invoke(cli, ["owners", "invite", "not-an-email"])
    assert bad_email.exit_code == 2
