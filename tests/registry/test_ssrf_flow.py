"""The SSRF guard through the running arena: registration, battles, pinning, redirects."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from arena.battles.turns import NEUTRAL_ERROR
from arena.registry.address_guard import ChatCall, guarded_chat
from arena.upstream.client import Endpoint, Limits, UpstreamEvent
from arena.upstream.http import upstream_client
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, answer_for
from tests.registry.accounts import bearer, owner_with_model, register, sign_up
from tests.registry.async_run import run_async
from tests.servers import ServerThread
from tests.sse import read_stream, start_battle


@pytest.mark.parametrize(
    ("base_url", "words"),
    [
        ("http://127.0.0.1:{port}/v1", "loopback"),
        ("http://localhost:{port}/v1", "resolves to 127.0.0.1"),
        ("http://[::1]:{port}/v1", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/v1", "IPv4-mapped"),
        ("http://2130706433:{port}/v1", "non-standard form"),
        ("http://0x7f.1:{port}/v1", "non-standard form"),
        ("http://0177.0.0.1:{port}/v1", "non-standard form"),
        ("http://0.0.0.0:{port}/v1", "unspecified"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1", "metadata"),
        ("http://[fd00:ec2::254]/latest", "metadata"),
        ("http://10.0.0.1:{port}/v1", "private"),
        ("file:///etc/passwd", "http"),
    ],
)
def test_registration_refuses_internal_addresses(
    shared_arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    base_url: str,
    words: str,
) -> None:
    arena = shared_arena_factory(allow_private_endpoints=False, signups_per_hour=1000)
    before = len(fake_upstream.received)
    with arena.client() as client:
        token = sign_up(client, email=f"{abs(hash(base_url))}@example.org")
        answer = register(client, token, base_url.format(port=fake_upstream.port))
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("base_url: ") and words in detail, detail
    assert len(fake_upstream.received) == before


def test_private_endpoints_allowed_by_the_operator(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(allow_private_endpoints=True)
    with arena.client() as client:
        token = sign_up(client)
        ok = register(client, token, f"http://localhost:{fake_upstream.port}/v1")
        assert ok.status_code == 201, ok.text
        # Metadata stays refused whatever the setting.
        metadata = register(client, token, "http://169.254.169.254/v1", name="meta")
        assert metadata.status_code == 422 and "metadata" in metadata.json()["detail"]


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/v1",
        "http://2852039166/v1",
        "http://[::ffff:169.254.169.254]/v1",
        "file:///etc/passwd",
    ],
)
def test_patch_to_an_internal_address_is_refused_and_changes_nothing(
    arena: Arena, fake_upstream: FakeUpstream, base_url: str
) -> None:
    """A registered endpoint cannot be moved where registration would not have let it go
    (these stay refused even with private endpoints allowed, as this arena has them)."""
    token = owner_with_model(arena, fake_upstream.base_url)
    before = len(fake_upstream.received)
    with arena.client() as client:
        moved = client.patch(
            "/api/models/ada-7b", json={"base_url": base_url}, headers=bearer(token)
        )
        assert moved.status_code == 422, moved.text
        assert moved.json()["detail"].startswith("base_url: ")
        kept = client.get("/api/models/ada-7b", headers=bearer(token)).json()
    assert kept["base_url"] == fake_upstream.base_url and kept["status"] == "active"
    assert len(fake_upstream.received) == before


def test_the_test_probe_rechecks_the_address(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    """An endpoint registered while private addresses were allowed is refused by the probe
    once the operator turns them off: nothing is sent to it."""
    token = owner_with_model(arena_factory(allow_private_endpoints=True), fake_upstream.base_url)
    closed = arena_factory(allow_private_endpoints=False)
    before = len(fake_upstream.received)
    with closed.client() as client:
        probe = client.post("/api/models/ada-7b/test", headers=bearer(token))
    assert probe.status_code == 200, probe.text
    body = probe.json()
    assert body["ok"] is False and body["kind"] == "refused_address"
    assert body["field"] == "base_url" and "loopback" in body["reason"]
    assert len(fake_upstream.received) == before


def test_battles_recheck_the_address_at_call_time(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    """Endpoints stored earlier (by the CLI, or before the operator closed private addresses)
    are checked again on every call: the side fails with the neutral error, no request leaves,
    and nothing about the endpoint reaches the visitor."""
    arena = arena_factory(allow_private_endpoints=False)
    arena.add_model("inside-a", f"http://127.0.0.1:{fake_upstream.port}/v1", "normal")
    arena.add_model("inside-b", f"http://localhost:{fake_upstream.port}/v1", "normal")
    before = len(fake_upstream.received)
    with arena.client() as visitor:
        stream = read_stream(visitor, start_battle(visitor))
    assert stream.end["status"] == "failed"
    errors = [e for e in stream.events if e["type"] == "error"]
    assert {e["side"] for e in errors} == {"a", "b"}
    assert all(e["message"] == NEUTRAL_ERROR for e in errors)
    body = str(stream.events)
    for secret in ("127.0.0.1", "localhost", "loopback", str(fake_upstream.port), "inside-"):
        assert secret not in body
    assert len(fake_upstream.received) == before


def test_the_same_battle_runs_when_private_endpoints_are_allowed(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("inside-a", f"http://127.0.0.1:{fake_upstream.port}/v1", "normal")
    arena.add_model("inside-b", f"http://localhost:{fake_upstream.port}/v1", "normal")
    with arena.client() as visitor:
        stream = read_stream(visitor, start_battle(visitor, "pin me"))
    assert stream.end["status"] == "ready"
    assert stream.text("a") == answer_for("pin me")


def test_the_connection_goes_to_the_checked_address_whatever_the_name_resolves_to_later(
    fake_upstream: FakeUpstream,
) -> None:
    """`upstream.test` exists only in the guard's answer: the call can only have reached the fake
    upstream by connecting to the pinned address, while Host still names the endpoint."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    chat = guarded_chat(allow_private=True, resolve=resolve)
    endpoint = Endpoint(base_url=f"http://upstream.test:{fake_upstream.port}/v1", model="normal")
    events: list[UpstreamEvent] = []

    async def call() -> str:
        async with upstream_client() as client:
            answer = await chat(
                client, endpoint, [{"role": "user", "content": "pinned"}], Limits(), events.append
            )
        assert answer.ok, answer.failure
        return answer.text

    assert run_async(call()) == answer_for("pinned")
    assert asked == ["upstream.test"]
    assert fake_upstream.received[-1].headers["host"] == f"upstream.test:{fake_upstream.port}"

    refused: list[UpstreamEvent] = []
    strict = guarded_chat(allow_private=False, resolve=resolve)

    async def refused_call() -> None:
        async with upstream_client() as client:
            answer = await strict(client, endpoint, [], Limits(), refused.append)
        assert answer.failure is not None and answer.failure.kind == "connect"

    run_async(refused_call())
    assert len(refused) == 1


def test_redirects_are_not_followed(arena: Arena, fake_upstream: FakeUpstream) -> None:
    async def bounce(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{fake_upstream.base_url}/chat/completions", status_code=307)

    redirector = ServerThread(
        Starlette(routes=[Route("/v1/chat/completions", bounce, methods=["POST"])])
    ).start()
    before = len(fake_upstream.received)
    try:
        with arena.client() as client:
            answer = register(client, sign_up(client), f"{redirector.url}/v1")
    finally:
        redirector.stop()
    assert answer.status_code == 422
    assert "redirect (HTTP 307)" in answer.json()["detail"]
    assert len(fake_upstream.received) == before


def test_battles_reuse_an_address_check_for_a_few_seconds_only(
    fake_upstream: FakeUpstream,
) -> None:
    """Within `recheck_seconds` the relay calls the address it checked without resolving again;
    after that, or once the host resolves somewhere refused, it checks anew and refuses."""
    answers = ["127.0.0.1"]
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return list(answers)

    endpoint = Endpoint(base_url=f"http://upstream.test:{fake_upstream.port}/v1", model="normal")

    async def calls(chat: ChatCall, n: int) -> list[bool]:
        results = []
        async with upstream_client() as client:
            for _ in range(n):
                answer = await chat(
                    client, endpoint, [{"role": "user", "content": "x"}], Limits(), lambda e: None
                )
                results.append(answer.ok)
        return results

    kept = guarded_chat(allow_private=True, resolve=resolve, recheck_seconds=60)
    assert run_async(calls(kept, 3)) == [True, True, True]
    assert asked == ["upstream.test"]

    asked.clear()
    every_time = guarded_chat(allow_private=True, resolve=resolve, recheck_seconds=0)
    assert run_async(calls(every_time, 2)) == [True, True]
    assert asked == ["upstream.test", "upstream.test"]

    # A refusal is never kept: each call asks again, and each is refused.
    asked.clear()
    answers[:] = ["169.254.169.254"]
    refusing = guarded_chat(allow_private=True, resolve=resolve, recheck_seconds=60)
    assert run_async(calls(refusing, 2)) == [False, False]
    assert asked == ["upstream.test", "upstream.test"]
