"""The built-in demo endpoints: a real OpenAI-compatible server, distinct deterministic models,
registration beside `arena serve`, and whole battles through the arena against them."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from arena.config import Settings
from arena.errors import DemoUnavailable
from arena.models import Model, ModelStatus
from arena.registry import service as registry
from arena.registry.demo_models import start_demo_for_serve
from arena.upstream.demo import DEMO_MODELS, DEMO_ORGANIZATION, DemoServer, create_demo_app
from arena.upstream.demo_answers import Conversation
from tests.conftest import Arena, run_db
from tests.fake_upstream import FakeUpstream
from tests.servers import ServerThread, arena_serve, free_port
from tests.sse import read_stream, start_battle

NAMES = [m.name for m in DEMO_MODELS]
PROMPTS = [
    "What is the capital of France?",
    "Write a Python function that removes duplicates from a list",
    "What is 12 * 7?",
    "hello",
    "Is coffee bad for your health?",
]


@pytest.fixture(scope="module")
def demo() -> Iterator[ServerThread]:
    server = ServerThread(create_demo_app(seconds_per_word=0)).start()
    yield server
    server.stop()


def _chat(base: str, model: str, prompt: str, **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}
    return {"json": body, "url": f"{base}/v1/chat/completions"}


def _ask(base: str, model: str, prompt: str, **extra: Any) -> str:
    request = _chat(base, model, prompt, **extra)
    response = httpx.post(request["url"], json=request["json"], timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def _stream(base: str, model: str, prompt: str, **extra: Any) -> list[str]:
    """The `data` of every event, in order, from a streamed completion."""
    request = _chat(base, model, prompt, stream=True, **extra)
    data: list[str] = []
    with httpx.stream("POST", request["url"], json=request["json"], timeout=10) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                data.append(line[6:])
    return data


def test_streams_openai_chunks_and_answers_json(demo: ServerThread) -> None:
    for name in NAMES:
        data = _stream(demo.url, name, PROMPTS[1])
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        assert all(c["object"] == "chat.completion.chunk" and c["model"] == name for c in chunks)
        assert len({c["id"] for c in chunks}) == 1
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-1]["choices"][0] == {
            "index": 0,
            "delta": {},
            "logprobs": None,
            "finish_reason": "stop",
        }
        pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
        assert len(pieces) > 5, "streamed word by word"
        assert "".join(pieces) == _ask(demo.url, name, PROMPTS[1])


def test_models_answer_differently_and_deterministically(demo: ServerThread) -> None:
    for prompt in PROMPTS:
        answers = {name: _ask(demo.url, name, prompt) for name in NAMES}
        assert len(set(answers.values())) == len(NAMES), answers
        assert answers == {name: _ask(demo.url, name, prompt) for name in NAMES}
    terse, thorough = (
        _ask(demo.url, "demo-terse", PROMPTS[0]),
        _ask(demo.url, "demo-thorough", PROMPTS[0]),
    )
    assert len(terse) * 5 < len(thorough)
    code_answer = _ask(demo.url, "demo-thorough", PROMPTS[1])
    assert "```python\n" in code_answer and "\n1. " in code_answer and "\n- " in code_answer
    assert "84" in _ask(demo.url, "demo-plain", PROMPTS[2])


def test_follow_up_turns_change_the_answer(demo: ServerThread) -> None:
    conversation = [
        {"role": "user", "content": PROMPTS[0]},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And what about Germany?"},
    ]
    for name in NAMES:
        response = httpx.post(
            f"{demo.url}/v1/chat/completions",
            json={"model": name, "messages": conversation},
            timeout=10,
        )
        follow_up = response.json()["choices"][0]["message"]["content"]
        assert follow_up != _ask(demo.url, name, "And what about Germany?")


_NAMES_AND_ORG = st.sampled_from([*NAMES, DEMO_ORGANIZATION, "DEMO-Terse", "Arena Demo"])


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(max_size=80),
    name=_NAMES_AND_ORG,
    after=st.text(max_size=80),
    earlier=st.lists(st.text(max_size=40), max_size=2),
)
def test_answers_never_name_a_demo_model(
    before: str, name: str, after: str, earlier: list[str]
) -> None:
    conversation = Conversation(prompt=f"{before} {name}? {after}", earlier_prompts=tuple(earlier))
    for model in DEMO_MODELS:
        answer = model.answer(conversation).lower()
        for forbidden in (*NAMES, DEMO_ORGANIZATION):
            assert forbidden not in answer


def test_streams_at_the_configured_pace() -> None:
    pace = 0.02
    server = ServerThread(create_demo_app(seconds_per_word=pace)).start()
    try:
        started = time.perf_counter()
        data = _stream(server.url, "demo-thorough", PROMPTS[0])
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
    words = len(data) - 3  # the role chunk, the finish chunk and [DONE]
    assert elapsed >= pace * (words - 1)


def test_max_tokens_cuts_the_answer(demo: ServerThread) -> None:
    response = httpx.post(**_chat(demo.url, "demo-thorough", PROMPTS[0], max_tokens=3), timeout=10)
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["message"]["content"].split()) == 3
    assert response.json()["usage"]["completion_tokens"] == 3


def test_bad_requests_get_openai_style_errors(demo: ServerThread) -> None:
    url = f"{demo.url}/v1/chat/completions"
    unknown = httpx.post(
        url, json={"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert "demo-terse" in unknown.json()["error"]["message"]
    bad_bodies: list[Any] = [
        b"{not json",
        {"messages": [{"role": "user", "content": "x"}]},
        {"model": "demo-terse", "messages": []},
        {"model": "demo-terse", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "demo-terse", "messages": [{"role": "user", "content": "x"}], "stream": "maybe"},
        {"model": "demo-terse", "messages": "hello"},
        ["a", "list"],
    ]
    for body in bad_bodies:
        if isinstance(body, bytes):
            response = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        else:
            response = httpx.post(url, json=body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
    assert httpx.get(f"{demo.url}/v2/nothing").json()["error"]["code"] == "not_found"


def test_lists_its_models(demo: ServerThread) -> None:
    listed = httpx.get(f"{demo.url}/v1/models").json()
    assert [m["id"] for m in listed["data"]] == NAMES
    assert {m["owned_by"] for m in listed["data"]} == {DEMO_ORGANIZATION}
    assert httpx.get(f"{demo.url}/v1/models/demo-plain").json()["id"] == "demo-plain"
    assert httpx.get(f"{demo.url}/v1/models/nope").status_code == 404


# ---------------------------------------------------------------- beside the arena


def _registered(settings: Settings) -> list[Model]:
    return run_db(settings, registry.list_models)


def test_serve_registers_the_demo_models_once(arena: Arena, demo: ServerThread) -> None:
    arena.settings.demo_port = demo.port
    start_demo_for_serve(arena.settings)  # the port answers as a demo server: reused
    start_demo_for_serve(arena.settings)
    models = _registered(arena.settings)
    assert [m.name for m in models] == sorted(NAMES)
    assert {m.status for m in models} == {ModelStatus.active}
    assert {m.base_url for m in models} == {f"http://127.0.0.1:{demo.port}/v1"}
    assert {m.organization for m in models} == {DEMO_ORGANIZATION}


def test_a_paused_demo_model_stays_paused(arena: Arena, demo: ServerThread) -> None:
    arena.settings.demo_port = demo.port
    start_demo_for_serve(arena.settings)

    async def pause(session: AsyncSession) -> None:
        model = await registry.model_by_name(session, "demo-whimsical")
        await registry.set_status(session, model=model, status=ModelStatus.paused, actor="test")

    arena.db(pause)
    start_demo_for_serve(arena.settings)
    statuses = {m.name: m.status for m in _registered(arena.settings)}
    assert statuses["demo-whimsical"] == ModelStatus.paused
    assert len(statuses) == len(NAMES)


def test_a_port_held_by_something_else_is_refused(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.settings.demo_port = fake_upstream.port
    with pytest.raises(DemoUnavailable, match="ARENA_DEMO_PORT"):
        start_demo_for_serve(arena.settings)
    assert _registered(arena.settings) == []


def test_demo_server_runs_in_the_background() -> None:
    server = DemoServer(free_port(), seconds_per_word=0).start()
    try:
        assert _ask(server.base_url.removesuffix("/v1"), "demo-terse", "hello")
    finally:
        server.stop()


def test_full_battle_against_the_demo_models(arena: Arena, demo: ServerThread) -> None:
    arena.settings.demo_port = demo.port
    start_demo_for_serve(arena.settings)
    prompt = PROMPTS[1]
    with arena.client() as visitor:
        battle_id = start_battle(visitor, prompt)
        stream = read_stream(visitor, battle_id)
        assert stream.end == {"type": "end", "status": "ready"}
        answers = {side: stream.text(side) for side in ("a", "b")}
        assert answers["a"] != answers["b"]
        for answer in answers.values():
            assert not any(name in answer for name in NAMES)

        assert visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "Why?"}).is_success
        follow_up = read_stream(visitor, battle_id)
        assert follow_up.end == {"type": "end", "status": "ready"}

        reveal = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"}).json()
    for side in ("a", "b"):
        revealed = reveal[f"model_{side}"]
        assert revealed["organization"] == DEMO_ORGANIZATION
        assert answers[side] == _ask(demo.url, revealed["name"], prompt)


def test_arena_serve_demo_runs_a_battle(tmp_path: Path) -> None:
    """What `make run` does: `arena db upgrade`, then `arena serve --demo`, on a fresh folder."""
    port, demo_port = free_port(), free_port()
    env = {
        **os.environ,
        "ARENA_DATA_DIR": str(tmp_path / "data"),
        "ARENA_PORT": str(port),
        "ARENA_DEMO_PORT": str(demo_port),
        "ARENA_DEMO_SECONDS_PER_WORD": "0.001",
    }
    env.pop("ARENA_DATABASE_URL", None)
    with arena_serve(tmp_path, env, "--demo") as base:
        with httpx.Client(base_url=base, timeout=30) as visitor:
            battle_id = start_battle(visitor, "Tell me about tea")
            stream = read_stream(visitor, battle_id)
            assert stream.end == {"type": "end", "status": "ready"}, stream.events
            vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
            assert vote.json()["model_a"]["name"] in NAMES
