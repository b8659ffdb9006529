"""A worker killed mid-stream: the next worker to start settles its turns at once, and a worker
starting beside a live one leaves the live one's turns alone."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.turns import NEUTRAL_ERROR
from arena.config import Settings
from arena.models import Battle, WorkerInstance
from arena.visitors import SESSION_COOKIE
from tests.arena_process import ArenaProcess, cookie_header
from tests.conftest import add_model, make_settings, run_db
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream, start_battle

# The first word, then nothing until the test releases the rest: a turn still streaming
# however long a worker takes to start (seconds: the app imports numpy, pandas and scipy).
HELD_MODEL = "held"


@pytest.fixture
def held_upstream(fake_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    """The fake upstream, its "held" answers stopped after their first word until release()."""
    fake_upstream.hold()
    yield fake_upstream
    fake_upstream.release()


def _status(settings: Settings, battle_id: str) -> str:
    async def work(session: AsyncSession) -> str:
        battle = await session.get(Battle, battle_id)
        assert battle is not None
        return battle.status.value

    return run_db(settings, work)


def _until_status(settings: Settings, battle_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _status(settings, battle_id) != status:
        assert time.monotonic() < deadline, f"the battle never became {status}"
        time.sleep(0.05)


def _workers_listed(settings: Settings) -> int:
    async def work(session: AsyncSession) -> int:
        return len((await session.scalars(select(WorkerInstance.id))).all())

    return run_db(settings, work)


def _events(lines: Iterator[str]) -> Iterator[dict[str, object]]:
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])


def _until_first_delta(events: Iterator[dict[str, object]]) -> None:
    for event in events:
        if event["type"] == "delta":
            return
    raise AssertionError("the stream ended before its first token")


def _two_held_models(database_url: str, tmp_path: Path, fake_upstream: FakeUpstream) -> Settings:
    """Settings of an arena whose two models stop after their first word until the test lets
    them go on (FakeUpstream.release), to be caught mid-stream."""
    settings = make_settings(
        database_url, tmp_path, first_token_timeout=10.0, idle_timeout=120.0, total_timeout=240.0
    )
    add_model(settings, "alpha", fake_upstream.base_url, HELD_MODEL, organization="A")
    add_model(settings, "beta", fake_upstream.base_url, HELD_MODEL, organization="B")
    return settings


@pytest.mark.slow
def test_a_turn_cut_short_by_sigkill_is_settled_when_the_next_worker_starts(
    database_url: str, tmp_path: Path, held_upstream: FakeUpstream
) -> None:
    settings = _two_held_models(database_url, tmp_path, held_upstream)

    killed = ArenaProcess(settings, tmp_path / "killed.log").start()
    try:
        with httpx.Client(base_url=killed.url, timeout=30) as visitor:
            battle_id = start_battle(visitor)
            with visitor.stream("GET", f"/api/battles/{battle_id}/stream") as response:
                assert response.status_code == 200
                _until_first_delta(_events(response.iter_lines()))
                # The first word reaches the visitor before the turn's start is on disk.
                _until_status(settings, battle_id, "streaming")
                killed.kill()
            session_id = visitor.cookies[SESSION_COOKIE]
    finally:
        killed.stop()
    assert _status(settings, battle_id) == "streaming"

    restarted = ArenaProcess(settings, tmp_path / "restarted.log").start()
    try:
        with httpx.Client(
            base_url=restarted.url, timeout=30, headers=cookie_header(session_id)
        ) as visitor:
            asked = time.monotonic()
            replayed = read_stream(visitor, battle_id)
            assert time.monotonic() - asked < 5
            errors = [e for e in replayed.events if e["type"] == "error"]
            assert sorted(e["side"] for e in errors) == ["a", "b"]
            assert all(e["message"] == NEUTRAL_ERROR for e in errors)
            assert replayed.end == {"type": "end", "status": "failed"}
            view = visitor.get(f"/api/battles/{battle_id}").json()
            assert view["status"] == "failed"
            answers = [m for m in view["messages"] if m["side"] != "user"]
            assert [m["error"] for m in answers] == [NEUTRAL_ERROR, NEUTRAL_ERROR]
        # The killed worker was unlisted once settled; the restarted one is listed.
        assert _workers_listed(settings) == 1
    finally:
        restarted.stop()
    assert _workers_listed(settings) == 0


@pytest.mark.slow
def test_a_worker_starting_leaves_a_live_workers_turn_alone(
    database_url: str, tmp_path: Path, held_upstream: FakeUpstream
) -> None:
    settings = _two_held_models(database_url, tmp_path, held_upstream)

    live = ArenaProcess(settings, tmp_path / "live.log").start()
    starting = ArenaProcess(settings, tmp_path / "starting.log")
    try:
        # The stream is silent while the other worker starts: a read may wait that long.
        with httpx.Client(base_url=live.url, timeout=120) as visitor:
            battle_id = start_battle(visitor)
            with visitor.stream("GET", f"/api/battles/{battle_id}/stream") as response:
                assert response.status_code == 200
                events = _events(response.iter_lines())
                _until_first_delta(events)
                starting.start()
                # The other worker has started (and settled what it found) mid-turn.
                assert _status(settings, battle_id) == "streaming", "the turn ended too soon"
                assert _workers_listed(settings) == 2
                held_upstream.release()
                rest = list(events)
            assert rest[-1] == {"type": "end", "status": "ready"}
            assert not [e for e in rest if e["type"] == "error"]
        assert _status(settings, battle_id) == "ready"
    finally:
        starting.stop()
        live.stop()
