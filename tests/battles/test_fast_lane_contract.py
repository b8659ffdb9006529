"""The fast lane's contract with the app: it sits outside every middleware, so a layer added to
the app does not reach the battle's two hot requests unless the lane is told; and a request the
lane hands on is not worked twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from arena.app import create_app
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream

# What a request passes through, outermost first. The bound on request bodies (first) applies to
# every request, the fast lane's included. The fast lane (second) serves POST /api/battles and
# GET /api/battles/{id}/stream itself, and re-does by hand what the layers below it do for those
# two routes: security headers (arena.pages.ALWAYS), the rate limit, the session cookie and error
# rendering.
PINNED_LAYERS = [
    "arena.body_limit.BodyLimit",
    "arena.battles.fast_lane.BattleFastLane",
    "starlette.middleware.errors.ServerErrorMiddleware",
    "fastapi.telemetry._asgi.ExceptionTelemetryMiddleware",
    "fastapi._body_limit.AppBodyLimitMiddleware",
    "arena.pages.SecurityHeaders",
    "starlette.middleware.exceptions.ExceptionMiddleware",
    "fastapi.middleware.asyncexitstack.AsyncExitStackMiddleware",
    "fastapi.routing.APIRouter",
]


def _layers() -> list[str]:
    layer: Any = create_app().build_middleware_stack()
    names = []
    while layer is not None and not callable(getattr(layer, "__func__", None)):
        names.append(f"{type(layer).__module__}.{type(layer).__name__}")
        layer = getattr(layer, "app", None)
    return names


def test_the_layers_a_request_passes_are_pinned() -> None:
    layers = _layers()
    assert layers == PINNED_LAYERS, (
        "The app's middleware changed. The battle's two hot requests are served by "
        "arena/battles/fast_lane.py outside every middleware, so a new layer does not apply to "
        "them. Decide what the fast lane does about it (do the same for its two routes, or "
        "state why it need not), then update PINNED_LAYERS.\n"
        f"now:    {layers}\npinned: {PINNED_LAYERS}"
    )


@pytest.fixture
def claims() -> Iterator[list[str]]:
    """Every claim statement any engine of this process runs (the arena runs in a thread)."""
    seen: list[str] = []
    lock = threading.Lock()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        text = " ".join(statement.split()).upper()
        if text.startswith("UPDATE BATTLE SET STATUS") and "RETURNING" in text:
            with lock:
                seen.append(text)

    event.listen(Engine, "before_cursor_execute", count)
    yield seen
    event.remove(Engine, "before_cursor_execute", count)


def test_a_request_the_fast_lane_hands_on_is_claimed_once(
    arena: Arena, fake_upstream: FakeUpstream, claims: list[str]
) -> None:
    arena.add_model("alpha", fake_upstream.base_url, "normal:0.001")
    arena.add_model("beta", fake_upstream.base_url, "normal:0.001")
    with arena.client() as visitor:
        battle_id = visitor.post("/api/battles", json={"prompt": "Once"}).json()["battle_id"]
        assert read_stream(visitor, battle_id).end == {"type": "end", "status": "ready"}
        before = len(claims)
        reloaded = read_stream(visitor, battle_id)  # the lane finds no turn; the app replays
        assert reloaded.end == {"type": "end", "status": "ready"}
        unknown = visitor.get("/api/battles/no-such-battle/stream")
        assert unknown.status_code == 404, unknown.text
    assert len(claims) - before == 2, claims[before:]
