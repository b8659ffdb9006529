"""Connections PostgreSQL closed (a restart, a terminated backend) never reach a request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import text

from arena.db import make_sync_engine
from tests.conftest import make_settings, start_arena

CONCURRENCY = 8


async def _statuses(url: str, path: str) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        responses = await asyncio.gather(*(client.get(path) for _ in range(CONCURRENCY)))
    return [response.status_code for response in responses]


async def _battle_statuses(url: str) -> list[int]:
    """New battles: their short transactions have connections of their own (db.Transactions)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        responses = await asyncio.gather(
            *(client.post("/api/battles", json={"prompt": "hi"}) for _ in range(CONCURRENCY))
        )
    return [response.status_code for response in responses]


def _terminate_other_backends(url: str) -> int:
    """What a database restart does to every pooled connection; waits until they are gone."""
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
            )
    finally:
        engine.dispose()


def test_requests_after_the_server_closed_pooled_connections_succeed(
    empty_postgres_database: str, tmp_path: Path
) -> None:
    arena = start_arena(make_settings(empty_postgres_database, tmp_path))
    try:
        # Several requests at once leave several connections in the pool.
        assert asyncio.run(_statuses(arena.url, "/healthz")) == [200] * CONCURRENCY
        # No model is registered: each battle is refused (503), after reading the candidates.
        assert asyncio.run(_battle_statuses(arena.url)) == [503] * CONCURRENCY
        assert _terminate_other_backends(empty_postgres_database) >= 2
        assert asyncio.run(_statuses(arena.url, "/healthz")) == [200] * CONCURRENCY
        assert asyncio.run(_statuses(arena.url, "/api/votes/counts")) == [200] * CONCURRENCY
        assert asyncio.run(_battle_statuses(arena.url)) == [503] * CONCURRENCY
        # With models, each battle is also written: the writer's connection is checked too.
        arena.add_model("alpha", "http://127.0.0.1:9/v1", "normal")
        arena.add_model("beta", "http://127.0.0.1:9/v1", "normal")
        assert asyncio.run(_battle_statuses(arena.url)) == [201] * CONCURRENCY
        assert _terminate_other_backends(empty_postgres_database) >= 2
        assert asyncio.run(_battle_statuses(arena.url)) == [201] * CONCURRENCY
    finally:
        arena.server.stop()
