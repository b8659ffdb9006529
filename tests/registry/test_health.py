"""Endpoint health: the circuit breaker pauses a failing model, the probe brings it back."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from arena.models import Battle, Model
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import ADMIN, bearer, owner_with_model
from tests.servers import ServerThread
from tests.sse import read_stream, start_battle


class SwitchableUpstream:
    """An OpenAI-compatible endpoint that fails (HTTP 503) until it is switched back on."""

    def __init__(self) -> None:
        self.healthy = True
        self.calls = 0
        self.server = ServerThread(
            Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        )

    async def _chat(self, request: Request) -> Response:
        self.calls += 1
        if not self.healthy:
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        model = (await request.json())["model"]

        async def events() -> AsyncIterator[str]:
            for word in ("All ", "systems ", "go."):
                chunk = {"model": model, "choices": [{"index": 0, "delta": {"content": word}}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            done = {"model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            yield f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/v1"


@pytest.fixture
def switchable() -> Iterator[SwitchableUpstream]:
    upstream = SwitchableUpstream()
    upstream.server.start()
    yield upstream
    upstream.server.stop()


def _battle(arena: Arena, *, vote: bool = False) -> str:
    """A battle streamed to its end (and voted on when it can be, with `vote`); its status."""
    with arena.client() as visitor:
        battle_id = start_battle(visitor)
        status = str(read_stream(visitor, battle_id).end["status"])
        if vote and status == "ready":
            voted = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"})
            assert voted.status_code == 200, voted.text
        return status


def _status(arena: Arena, token: str, name: str) -> dict[str, object]:
    with arena.client() as client:
        answer = client.get(f"/api/models/{name}/stats", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        stats: dict[str, object] = answer.json()
        return stats


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_circuit_breaker_pauses_a_failing_model_which_then_stops_being_drawn(
    arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    switchable: SwitchableUpstream,
) -> None:
    arena = arena_factory(circuit_breaker_failures=2, health_probe_seconds=0)
    arena.add_model("steady-a", fake_upstream.base_url)
    token = owner_with_model(arena, switchable.base_url, name="flaky")
    switchable.healthy = False

    assert _battle(arena) == "failed"
    assert _status(arena, token, "flaky")["status"] == "active"
    assert _battle(arena) == "failed"
    stats = _status(arena, token, "flaky")
    assert stats["status"] == "paused"
    assert stats["consecutive_failures"] == 2 and stats["circuit_breaker_threshold"] == 2
    reason = str(stats["status_reason"])
    assert "2 consecutive failed answers" in reason and "status" in reason
    events = stats["events"]
    assert isinstance(events, list) and events[0]["actor"] == "circuit-breaker"
    assert stats["failed_answers"] == 2 and stats["error_rate"] == 1.0
    assert stats["recent_errors"] and "503" in str(stats["recent_errors"])

    arena.add_model("steady-b", fake_upstream.base_url)
    calls = switchable.calls
    for _ in range(4):
        assert _battle(arena) == "ready"
    assert switchable.calls == calls

    async def flaky_battles(session: AsyncSession) -> int:
        flaky = await session.scalar(select(Model.id).where(Model.name == "flaky"))
        found = await session.scalars(
            select(Battle.id).where(or_(Battle.model_a_id == flaky, Battle.model_b_id == flaky))
        )
        return len(found.all())

    assert arena.db(flaky_battles) == 2


def test_a_success_resets_the_count(
    arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    switchable: SwitchableUpstream,
) -> None:
    arena = arena_factory(circuit_breaker_failures=2, health_probe_seconds=0)
    arena.add_model("steady-a", fake_upstream.base_url)
    token = owner_with_model(arena, switchable.base_url, name="flaky")
    for healthy in (False, True, False, True, False):
        switchable.healthy = healthy
        # Voted: an owner's count waits for the battles that reset it to settle.
        _battle(arena, vote=True)
    stats = _status(arena, token, "flaky")
    assert stats["status"] == "active" and stats["consecutive_failures"] == 1


def test_the_health_probe_resumes_an_automatically_paused_model_once_it_answers(
    arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    switchable: SwitchableUpstream,
) -> None:
    arena = arena_factory(circuit_breaker_failures=1, health_probe_seconds=0.3)
    arena.add_model("steady-a", fake_upstream.base_url)
    token = owner_with_model(arena, switchable.base_url, name="flaky")
    switchable.healthy = False
    assert _battle(arena) == "failed"
    assert _status(arena, token, "flaky")["status"] == "paused"

    # Still broken: probed, and left paused.
    calls = switchable.calls
    assert _wait_for(lambda: switchable.calls >= calls + 2, 5)
    assert _status(arena, token, "flaky")["status"] == "paused"

    switchable.healthy = True
    assert _wait_for(lambda: _status(arena, token, "flaky")["status"] == "active", 10)
    stats = _status(arena, token, "flaky")
    events = stats["events"]
    assert isinstance(events, list)
    assert [e["actor"] for e in events[:2]] == ["health-probe", "circuit-breaker"]
    assert "resumed automatically" in events[0]["reason"]
    assert stats["consecutive_failures"] == 0
    assert _battle(arena) == "ready"


def test_models_paused_by_people_are_not_resumed_by_the_probe(
    arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    switchable: SwitchableUpstream,
) -> None:
    arena = arena_factory(circuit_breaker_failures=1, health_probe_seconds=0.2)
    ada = owner_with_model(arena, switchable.base_url, name="owner-paused")
    owner_with_model(arena, fake_upstream.base_url, name="operator-paused")
    with arena.client() as client:
        assert client.post("/api/models/owner-paused/pause", headers=bearer(ada)).status_code == 200
        paused = client.post(
            "/api/admin/models/operator-paused/pause", json={"reason": "review"}, headers=ADMIN
        )
        assert paused.status_code == 200
    calls = switchable.calls
    time.sleep(1.0)
    assert switchable.calls == calls

    async def statuses(session: AsyncSession) -> set[str]:
        return {m.status.value for m in await session.scalars(select(Model))}

    assert arena.db(statuses) == {"paused"}


def test_owner_resume_after_an_automatic_pause_probes_first(
    arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    switchable: SwitchableUpstream,
) -> None:
    arena = arena_factory(circuit_breaker_failures=1, health_probe_seconds=0, probe_timeout=2.0)
    arena.add_model("steady-a", fake_upstream.base_url)
    token = owner_with_model(arena, switchable.base_url, name="flaky")
    switchable.healthy = False
    assert _battle(arena) == "failed"
    with arena.client() as client:
        refused = client.post("/api/models/flaky/resume", headers=bearer(token))
        assert refused.status_code == 422 and "HTTP 503" in refused.json()["detail"]
        switchable.healthy = True
        resumed = client.post("/api/models/flaky/resume", headers=bearer(token))
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["model"]["status"] == "active"
        assert resumed.json()["probe"]["ok"] is True
