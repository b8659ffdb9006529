"""Battles and owners' tests through a real arena process whose endpoints are https:// ones
signed by a test CA (ARENA_CA_BUNDLE), reached directly, through a CONNECT proxy (HTTPS_PROXY),
around it (NO_PROXY), or http:// ones through HTTP_PROXY; and what a certificate the arena
does not trust shows the owner (the reason) and the visitor (the neutral error only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.turns import NEUTRAL_ERROR
from arena.config import Settings
from arena.models import Owner
from arena.registry import service as registry
from arena.registry.keys import KeyRing
from tests.arena_process import ArenaProcess
from tests.conftest import add_model, make_settings, run_db
from tests.fake_upstream import FakeUpstream, answer_for
from tests.forward_proxy import Authority, ForwardProxy
from tests.registry.accounts import bearer, register, sign_up
from tests.sse import StreamResult, read_stream, start_battle

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE")
PROMPT = "Which way to the endpoint?"


@contextmanager
def running_arena(settings: Settings, log: Path, **variables: str) -> Iterator[ArenaProcess]:
    """The arena with exactly these proxy variables (none inherited from the test run)."""
    env: dict[str, str | None] = {}
    for name in _PROXY_VARIABLES:
        env[name] = env[name.lower()] = None
    env.update(variables)
    arena = ArenaProcess(settings, log, env=env).start(timeout=120)
    try:
        yield arena
    finally:
        arena.stop()


def _battle(arena: ArenaProcess) -> StreamResult:
    with httpx.Client(base_url=arena.url, timeout=30) as visitor:
        return read_stream(visitor, start_battle(visitor, PROMPT))


def _both_answered(stream: StreamResult) -> None:
    for side in ("a", "b"):
        assert stream.last(side) == {"side": side, "type": "done", "finish_reason": "stop"}
        assert stream.text(side) == answer_for(PROMPT)
    assert stream.end["status"] == "ready"


def _two_models(settings: Settings, base_url: str) -> None:
    add_model(settings, "model-one", base_url)
    add_model(settings, "model-two", base_url)


@pytest.fixture
def tls_settings(settings: Settings, test_authority: Authority) -> Settings:
    return settings.model_copy(update={"ca_bundle": test_authority.bundle})


def test_a_battle_between_https_endpoints_signed_by_the_operators_ca(
    tls_settings: Settings, tls_upstream: FakeUpstream, tmp_path: Path
) -> None:
    _two_models(tls_settings, tls_upstream.base_url)
    with running_arena(tls_settings, tmp_path / "arena.log") as arena:
        _both_answered(_battle(arena))


def test_a_battle_through_a_connect_proxy(
    tls_settings: Settings,
    tls_upstream: FakeUpstream,
    forward_proxy: Callable[..., ForwardProxy],
    tmp_path: Path,
) -> None:
    proxy = forward_proxy()
    _two_models(tls_settings, tls_upstream.base_url)
    with running_arena(tls_settings, tmp_path / "arena.log", HTTPS_PROXY=proxy.url) as arena:
        _both_answered(_battle(arena))
    # Every connection went through the proxy, to the address the guard checked.
    assert proxy.connects
    assert set(proxy.connects) == {f"127.0.0.1:{tls_upstream.port}"}


def test_no_proxy_goes_around_the_proxy(
    tls_settings: Settings,
    tls_upstream: FakeUpstream,
    forward_proxy: Callable[..., ForwardProxy],
    tmp_path: Path,
) -> None:
    proxy = forward_proxy("407")  # would fail every call it carried
    _two_models(tls_settings, tls_upstream.base_url)
    with running_arena(
        tls_settings,
        tmp_path / "arena.log",
        HTTPS_PROXY=proxy.url,
        NO_PROXY="example.org, localhost",
    ) as arena:
        _both_answered(_battle(arena))
    assert proxy.authorizations == []  # no request reached it


def test_an_http_endpoint_through_http_proxy(
    settings: Settings,
    fake_upstream: FakeUpstream,
    forward_proxy: Callable[..., ForwardProxy],
    tmp_path: Path,
) -> None:
    proxy = forward_proxy()
    _two_models(settings, fake_upstream.base_url)
    # HTTPS_PROXY is for https:// endpoints only: this one must not be asked.
    unused = forward_proxy("407")
    with running_arena(
        settings, tmp_path / "arena.log", HTTP_PROXY=proxy.url, HTTPS_PROXY=unused.url
    ) as arena:
        _both_answered(_battle(arena))
    assert proxy.forwarded
    assert set(proxy.forwarded) == {f"http://127.0.0.1:{fake_upstream.port}/v1/chat/completions"}
    assert unused.authorizations == []


def _owned_model(settings: Settings, email: str, name: str, base_url: str) -> None:
    """A model of this owner, added as the operator's CLI adds one (active, no probe)."""
    keys = KeyRing.from_settings(settings)

    async def work(session: AsyncSession) -> None:
        owner_id = await session.scalar(select(Owner.id).where(Owner.email == email))
        await registry.add_model(
            session,
            new=registry.NewModel(name, base_url, "normal"),
            keys=keys,
            owner_id=owner_id,
            actor="test",
        )

    run_db(settings, work)


def test_a_certificate_the_arena_does_not_trust_is_named_to_the_owner_only(
    tls_settings: Settings,
    tls_upstream: FakeUpstream,
    rogue_tls_upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    add_model(tls_settings, "trusted-model", tls_upstream.base_url)
    with running_arena(tls_settings, tmp_path / "arena.log") as arena:
        with httpx.Client(base_url=arena.url, timeout=30) as owner:
            token = sign_up(owner, email="ada@example.org")
            # Registration probes the endpoint: refused, with the reason.
            refused = register(owner, token, rogue_tls_upstream.base_url, name="rogue-model")
            assert refused.status_code == 422, refused.text
            message = refused.json()["detail"]
            assert "base_url: certificate not trusted: " in str(message), message
            assert "issuer" in str(message)
        _owned_model(tls_settings, "ada@example.org", "rogue-model", rogue_tls_upstream.base_url)

        stream = _battle(arena)
        errors = [e for e in stream.events if e["type"] == "error"]
        assert len(errors) == 1
        assert errors[0]["message"] == NEUTRAL_ERROR
        other = "b" if errors[0]["side"] == "a" else "a"
        assert stream.text(other) == answer_for(PROMPT)
        assert "certif" not in str(stream.events).lower()

        with httpx.Client(base_url=arena.url, timeout=30) as owner:
            stats = owner.get("/api/models/rogue-model/stats", headers=bearer(token))
            assert stats.status_code == 200, stats.text
            recent = stats.json()["recent_errors"]
            assert len(recent) == 1
            assert recent[0]["error"].startswith("certificate not trusted: ")
            tested = owner.post("/api/models/rogue-model/test", headers=bearer(token))
            assert tested.status_code == 200, tested.text
            assert tested.json()["ok"] is False
            assert tested.json()["kind"] == "certificate"
            assert tested.json()["reason"].startswith("certificate not trusted: ")


def test_a_proxy_with_an_endless_answer_fails_the_battle_and_not_the_arena(
    tls_settings: Settings,
    tls_upstream: FakeUpstream,
    forward_proxy: Callable[..., ForwardProxy],
    tmp_path: Path,
) -> None:
    proxy = forward_proxy("endless-head")
    _two_models(tls_settings, tls_upstream.base_url)
    with running_arena(tls_settings, tmp_path / "arena.log", HTTPS_PROXY=proxy.url) as arena:
        stream = _battle(arena)
        assert [e["message"] for e in stream.events if e["type"] == "error"] == [
            NEUTRAL_ERROR,
            NEUTRAL_ERROR,
        ]
        assert httpx.get(f"{arena.url}/healthz").status_code == 200
    assert "the proxy's answer to CONNECT exceeded" in (tmp_path / "arena.log").read_text()


@pytest.mark.parametrize(
    ("setting", "variables", "says"),
    [
        ("missing.pem", {}, "ARENA_CA_BUNDLE: "),
        ("garbage.pem", {}, "could not be read as PEM certificates"),
        (None, {"SSL_CERT_FILE": "/nonexistent/ca.pem"}, "SSL_CERT_FILE: /nonexistent/ca.pem"),
        (None, {"HTTPS_PROXY": "socks5://127.0.0.1:1080"}, "HTTPS_PROXY: the arena reaches"),
    ],
)
def test_an_unusable_bundle_or_proxy_stops_the_arena_at_start(
    tmp_path: Path,
    sqlite_template: Path,
    setting: str | None,
    variables: dict[str, str],
    says: str,
) -> None:
    database = tmp_path / "arena.db"
    database.write_bytes(sqlite_template.read_bytes())
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    settings = make_settings(
        f"sqlite:///{database}",
        tmp_path,
        ca_bundle=None if setting is None else tmp_path / setting,
    )
    log = tmp_path / "arena.log"
    with pytest.raises(RuntimeError, match="the arena exited"):
        with running_arena(settings, log, **variables):
            pass
    assert says in log.read_text()
