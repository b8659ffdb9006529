"""Endpoint API keys: encrypted at rest, never shown again (routes, pages, logs), rotatable."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from arena.cli import app as cli
from arena.models import Model
from arena.registry.keys import KeyRing
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import ADMIN, bearer, register, sign_up
from tests.servers import ServerThread
from tests.sse import read_stream, start_battle

SECRET = "sk-live-ThisIsTheOwnersSecretKey-7Qx9"
OTHER_SECRET = "sk-live-TheOwnersSecondKeyAfterRotation-k2Zp"


def _stored_key_columns(arena: Arena) -> list[tuple[str | None, str | None]]:
    async def work(session: AsyncSession) -> list[tuple[str | None, str | None]]:
        rows = await session.execute(select(Model.api_key_encrypted, Model.api_key_last4))
        return [tuple(row) for row in rows.all()]  # type: ignore[misc]

    return arena.db(work)


def _database_dump(arena: Arena) -> str:
    """Every value of every row of every table, as text."""

    async def work(session: AsyncSession) -> str:
        from arena.models import Base

        parts = []
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(text(f'SELECT * FROM "{table.name}"'))).all():
                parts.append(repr(tuple(row)))
        return "\n".join(parts)

    return arena.db(work)


def test_keys_are_encrypted_at_rest_and_never_returned(
    arena: Arena,
    fake_upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with arena.client() as client:
        token = sign_up(client)
        created = register(client, token, fake_upstream.base_url, api_key=SECRET)
        seen.append(created.text)
        client.post("/api/admin/models/ada-7b/approve", headers=ADMIN)
        for method, path in [
            ("GET", "/api/models/mine"),
            ("GET", "/api/models/ada-7b"),
            ("POST", "/api/models/ada-7b/test"),
            ("GET", "/api/models/ada-7b/stats"),
            ("POST", "/api/models/ada-7b/pause"),
            ("POST", "/api/models/ada-7b/resume"),
        ]:
            seen.append(client.request(method, path, headers=bearer(token)).text)
        seen.append(
            client.patch(
                "/api/models/ada-7b", json={"description": "x"}, headers=bearer(token)
            ).text
        )
        for path in ["/api/admin/models", "/api/admin/models/ada-7b/stats", "/api/admin/owners"]:
            seen.append(client.get(path, headers=ADMIN).text)
        seen.append(client.get("/owner").text)
        seen.append(client.get("/openapi.json").text)
        # The public side: pages, their data and the open downloads.
        for path in [
            "/",
            "/leaderboard",
            "/api/leaderboard",
            "/leaderboard.csv",
            "/models/ada-7b",
            "/api/leaderboard/models/ada-7b",
            "/battles.jsonl",
            "/battles.csv",
            "/api/sampling",
        ]:
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text)
            seen.append(answer.text)
        # A new key is answered with its last four characters only, like the first one.
        rekeyed = client.patch(
            "/api/models/ada-7b", json={"api_key": OTHER_SECRET}, headers=bearer(token)
        )
        assert rekeyed.status_code == 200 and rekeyed.json()["model"]["api_key_last4"] == "k2Zp"
        seen.append(rekeyed.text)
        seen.append(client.get("/api/admin/models", headers=ADMIN).text)
    # The operator's CLI lists keys by their last four characters too.
    monkeypatch.chdir(tmp_path)
    listed = _run_cli(
        ["models", "list"],
        {
            "ARENA_DATABASE_URL": arena.settings.database_url,
            "ARENA_DATA_DIR": str(tmp_path),
            "ARENA_SECRET_KEY": arena.settings.resolved_secret_key(),
        },
    )
    assert "k2Zp" in listed
    seen.append(listed)
    everything = "\n".join(seen)
    assert OTHER_SECRET not in everything and OTHER_SECRET[:-4] not in everything
    assert SECRET not in everything and SECRET[:-4] not in everything
    assert '"api_key_last4":"7Qx9"' in everything
    assert SECRET not in caplog.text and OTHER_SECRET not in caplog.text

    [(encrypted, last4)] = _stored_key_columns(arena)
    assert last4 == "k2Zp" and encrypted is not None
    dump = _database_dump(arena)
    assert SECRET not in dump and OTHER_SECRET not in dump
    assert KeyRing.from_settings(arena.settings).decrypt(encrypted) == OTHER_SECRET


def _echoing_upstream() -> ServerThread:
    """An endpoint that refuses every key and, carelessly, echoes it in the error body."""

    async def chat(request: Request) -> JSONResponse:
        key = request.headers.get("authorization", "")
        return JSONResponse({"error": {"message": f"Invalid key: {key}"}}, status_code=401)

    return ServerThread(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]))


def test_a_key_echoed_by_the_upstream_is_scrubbed_from_answers(
    arena: Arena, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream = _echoing_upstream().start()
    try:
        with arena.client() as client:
            refused = register(client, sign_up(client), f"{upstream.url}/v1", api_key=SECRET)
    finally:
        upstream.stop()
    assert refused.status_code == 422 and refused.json()["detail"].startswith("api_key: ")
    assert SECRET not in refused.text
    assert SECRET not in caplog.text


def test_a_key_echoed_during_a_battle_reaches_neither_database_nor_log(
    arena: Arena, fake_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream = _echoing_upstream().start()
    try:
        arena.add_model("careless", f"{upstream.url}/v1", api_key=SECRET)
        arena.add_model("steady", fake_upstream.base_url)
        with arena.client() as visitor:
            stream = read_stream(visitor, start_battle(visitor))
    finally:
        upstream.stop()
    assert stream.end["status"] == "failed"
    dump = _database_dump(arena)
    assert "Invalid key" in dump  # the operator still sees what went wrong
    assert SECRET not in dump and SECRET not in caplog.text


def _run_cli(args: list[str], env: dict[str, str]) -> str:
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_rotate_reencrypts_with_the_newest_key(
    arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    old_key = Fernet.generate_key().decode()
    arena = arena_factory(secret_key=old_key)
    arena.add_model("keyed", fake_upstream.base_url, api_key=SECRET)
    arena.add_model("keyless", fake_upstream.base_url)
    arena.server.stop()
    [before] = [key for key, _ in _stored_key_columns(arena) if key is not None]

    new_key = Fernet.generate_key().decode()
    env = {
        "ARENA_DATABASE_URL": arena.settings.database_url,
        "ARENA_DATA_DIR": str(tmp_path),
        "ARENA_SECRET_KEY": new_key,
        "ARENA_OLD_SECRET_KEYS": old_key,
    }
    # Without the old key listed nothing can be read, and nothing is changed.
    refused = CliRunner().invoke(cli, ["keys", "rotate"], env={**env, "ARENA_OLD_SECRET_KEYS": ""})
    assert refused.exit_code == 2 and "keyed" in refused.output
    assert [key for key, _ in _stored_key_columns(arena) if key is not None] == [before]

    assert "re-encrypted 1 endpoint keys" in _run_cli(["keys", "rotate"], env)
    [(after, last4)] = [row for row in _stored_key_columns(arena) if row[0] is not None]
    assert after != before and last4 == SECRET[-4:]
    # The newest key alone now reads it; the old key alone no longer does.
    assert KeyRing([new_key]).decrypt(after) == SECRET
    with pytest.raises(ValueError):
        KeyRing([old_key]).decrypt(after)

    # And the arena, started with only the new key, still calls the endpoint with the secret.
    rotated = arena_factory(secret_key=new_key)
    with rotated.client() as visitor:
        assert read_stream(visitor, start_battle(visitor)).end["status"] == "ready"
    sent = {r.headers.get("authorization") for r in fake_upstream.received[-2:]}
    assert sent == {f"Bearer {SECRET}", None}


def test_keys_generate_prints_a_usable_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    key = _run_cli(["keys", "generate"], {}).strip()
    assert KeyRing([key]).decrypt(KeyRing([key]).encrypt("x")) == "x"
