"""Registering an endpoint: the real probe before storing, and a 422 that says what to fix."""

from __future__ import annotations

import ipaddress
import socketserver
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from arena.models import Model, ModelStatusEvent
from arena.registry.failure_reasons import UNREACHABLE
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import ADMIN, bearer, register, sign_up
from tests.servers import ServerThread, free_port


def _models(arena: Arena) -> list[tuple[str, str]]:
    async def work(session: AsyncSession) -> list[tuple[str, str]]:
        rows = await session.execute(select(Model.name, Model.status).order_by(Model.name))
        return [(name, status.value) for name, status in rows.all()]

    return arena.db(work)


def test_register_probes_then_stores_pending(arena: Arena, fake_upstream: FakeUpstream) -> None:
    with arena.client() as client:
        token = sign_up(client)
        created = register(client, token, fake_upstream.base_url, api_key="sk-test-secret-9876")
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["status"] == "pending" and body["name"] == "ada-7b"
        assert body["probe"]["ok"] is True and body["probe"]["sample"]
        assert body["probe"]["latency_ms"] > 0
        # The probe was a real chat completion, with the key and a small token budget.
        probe = fake_upstream.requests_for("normal")[-1]
        assert probe.path == "/v1/chat/completions"
        assert probe.headers["authorization"] == "Bearer sk-test-secret-9876"
        assert probe.body["max_tokens"] <= 64 and probe.body["stream"] is True

        mine = client.get("/api/models/mine", headers=bearer(token)).json()
        assert [m["name"] for m in mine] == ["ada-7b"]
        assert mine[0]["api_key_last4"] == "9876" and mine[0]["has_api_key"] is True
        assert mine[0]["status"] == "pending"
        assert mine[0]["status_reason"] == "waiting for the operator's approval"
    assert _models(arena) == [("ada-7b", "pending")]


def test_pending_models_are_not_drawn_until_approved(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("house-model", fake_upstream.base_url)
    with arena.client() as client:
        token = sign_up(client)
        assert register(client, token, fake_upstream.base_url).status_code == 201
        assert client.post("/api/battles", json={"prompt": "hi"}).status_code == 503
        approved = client.post("/api/admin/models/ada-7b/approve", headers=ADMIN)
        assert approved.status_code == 200 and approved.json()["status"] == "active"
        assert client.post("/api/battles", json={"prompt": "hi"}).status_code == 201


def test_auto_approve_makes_registrations_active(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(auto_approve=True)
    with arena.client() as client:
        created = register(client, sign_up(client), fake_upstream.base_url)
        assert created.status_code == 201 and created.json()["status"] == "active"


@pytest.mark.parametrize(
    ("upstream_model", "field", "words"),
    [
        ("error401", "api_key", "refused the API key (HTTP 401)"),
        ("error403", "api_key", "HTTP 403"),
        ("error500", "base_url", "HTTP 500"),
        ("error404", "base_url", "HTTP 404"),
        ("unknown-model-id", "base_url", "HTTP 404"),
        ("garbage", "base_url", UNREACHABLE),
        ("html", "base_url", UNREACHABLE),
        ("invalid-utf8", "base_url", UNREACHABLE),
        ("midstream-close", "base_url", UNREACHABLE),
        ("hang", "base_url", UNREACHABLE),
        ("hang-after-headers", "base_url", UNREACHABLE),
    ],
)
def test_a_failing_endpoint_is_refused_with_the_reason(
    shared_arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    upstream_model: str,
    field: str,
    words: str,
) -> None:
    arena = shared_arena_factory(probe_timeout=1.0, signups_per_hour=1000)
    with arena.client() as client:
        token = sign_up(client, email=f"{upstream_model}@example.org")
        answer = register(client, token, fake_upstream.base_url, model=upstream_model)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"{field}: ") and words in detail, detail
    assert _models(arena) == []


class _RawListener:
    """A TCP port on loopback that is no HTTP server: it sends `greeting` to each connection
    (nothing at all when empty) and closes it after `hold` seconds."""

    def __init__(self, greeting: bytes, hold: float = 0.0) -> None:
        self.greeting, self.hold = greeting, hold
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        listener = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                if listener.greeting:
                    self.request.sendall(listener.greeting)
                time.sleep(listener.hold)

        return Handler

    def __enter__(self) -> _RawListener:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_probe_cannot_tell_a_closed_port_from_an_open_one(
    shared_arena_factory: Callable[..., Arena],
) -> None:
    arena = shared_arena_factory(probe_timeout=1.0, signups_per_hour=1000)
    garbage = b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff protocol mismatch\r\n"
    with (
        _RawListener(garbage) as talker,
        _RawListener(b"", hold=3.0) as silent,
        arena.client() as client,
    ):
        token = sign_up(client, email="scanner@example.org")
        answers = {
            where: register(client, token, f"http://127.0.0.1:{port}/v1", name=f"scan-{where}")
            for where, port in (
                ("closed", free_port()),
                ("talker", talker.port),
                ("silent", silent.port),
            )
        }
    assert {answer.status_code for answer in answers.values()} == {422}
    details = {answer.json()["detail"] for answer in answers.values()}
    assert details == {f"base_url: {UNREACHABLE}"}, details
    assert _models(arena) == []


def test_an_error_page_is_not_repeated_but_a_json_error_message_is(
    shared_arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = shared_arena_factory(probe_timeout=1.0, signups_per_hour=1000)
    with arena.client() as client:
        token = sign_up(client, email="pages@example.org")
        page = register(client, token, fake_upstream.base_url, model="page:500:db-password-hunter2")
        assert page.status_code == 422
        assert page.json()["detail"] == "base_url: the endpoint answered HTTP 500"
        assert "hunter2" not in page.text and "Internal" not in page.text

        refused = register(client, token, fake_upstream.base_url, model="error401:bad key")
        assert refused.status_code == 422
        assert refused.json()["detail"] == (
            "api_key: the endpoint refused the API key (HTTP 401); check api_key; "
            'it said: "bad key"'
        )


def test_json_answers_are_accepted(arena: Arena, fake_upstream: FakeUpstream) -> None:
    with arena.client() as client:
        answer = register(client, sign_up(client), fake_upstream.base_url, model="json")
    assert answer.status_code == 201, answer.text


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_connection_refused_dns_failure_and_tls_error(arena: Arena, tmp_path: Path) -> None:
    key_path, cert_path = _self_signed_certificate(tmp_path)
    # Any app will do: the handshake fails before a request could reach it.
    tls_server = ServerThread(
        Starlette(), ssl_keyfile=str(key_path), ssl_certfile=str(cert_path)
    ).start()
    try:
        with arena.client() as client:
            token = sign_up(client)
            closed = register(client, token, f"http://127.0.0.1:{free_port()}/v1")
            assert closed.status_code == 422
            assert closed.json()["detail"] == f"base_url: {UNREACHABLE}"

            dns = register(client, token, "https://no-such-host.invalid/v1")
            assert dns.status_code == 422
            assert "could not be resolved (DNS" in dns.json()["detail"]

            # A certificate no authority the arena trusts vouches for: named, with OpenSSL's
            # reason, as the owner can fix it. It tells a TLS server from a closed port, as a
            # status code tells an HTTP server (failure_reasons.py); a closed https:// port
            # reads as any unreachable endpoint.
            tls = register(client, token, f"https://127.0.0.1:{tls_server.port}/v1")
            closed_tls = register(client, token, f"https://127.0.0.1:{free_port()}/v1")
            assert tls.status_code == closed_tls.status_code == 422
            detail = tls.json()["detail"]
            assert detail.startswith("base_url: certificate not trusted: self-signed certificate")
            assert closed_tls.json()["detail"].startswith(f"base_url: {UNREACHABLE}")
            assert "certificate" in closed_tls.json()["detail"]
    finally:
        tls_server.stop()
    assert _models(arena) == []


def test_a_taken_name_is_refused_before_probing(arena: Arena, fake_upstream: FakeUpstream) -> None:
    arena.add_model("ada-7b", fake_upstream.base_url)
    with arena.client() as client:
        before = len(fake_upstream.received)
        answer = register(client, sign_up(client), fake_upstream.base_url)
        assert answer.status_code == 409 and answer.json()["detail"].startswith("name: ")
        assert len(fake_upstream.received) == before


def test_patch_reprobes_a_new_key_and_sends_a_moved_endpoint_back_to_pending(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    with arena.client() as client:
        token = sign_up(client)
        assert (
            register(client, token, fake_upstream.base_url, api_key="sk-old-key-1111").status_code
            == 201
        )
        client.post("/api/admin/models/ada-7b/approve", headers=ADMIN)

        # Parameters alone: no probe, status kept.
        before = len(fake_upstream.received)
        changed = client.patch(
            "/api/models/ada-7b",
            json={"temperature": 1.2, "description": "new"},
            headers=bearer(token),
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["probe"] is None and changed.json()["model"]["temperature"] == 1.2
        assert changed.json()["model"]["status"] == "active"
        assert len(fake_upstream.received) == before

        # A new key is probed with that key, and kept only if the probe passes.
        refused = client.patch(
            "/api/models/ada-7b",
            json={"api_key": "sk-new-key-2222", "model": "error401"},
            headers=bearer(token),
        )
        assert refused.status_code == 422 and refused.json()["detail"].startswith("api_key: ")
        kept = client.get("/api/models/ada-7b", headers=bearer(token)).json()
        assert kept["api_key_last4"] == "1111" and kept["model"] == "normal"

        rekeyed = client.patch(
            "/api/models/ada-7b", json={"api_key": "sk-new-key-2222"}, headers=bearer(token)
        )
        assert rekeyed.status_code == 200 and rekeyed.json()["probe"]["ok"] is True
        assert fake_upstream.received[-1].headers["authorization"] == "Bearer sk-new-key-2222"
        assert rekeyed.json()["model"]["api_key_last4"] == "2222"
        assert rekeyed.json()["model"]["status"] == "active"

        # Pointing the name at another model needs the operator's approval again.
        moved = client.patch("/api/models/ada-7b", json={"model": "json"}, headers=bearer(token))
        assert moved.status_code == 200, moved.text
        assert moved.json()["model"]["status"] == "pending"
        assert "approval" in moved.json()["model"]["status_reason"]

        removed = client.patch("/api/models/ada-7b", json={"api_key": None}, headers=bearer(token))
        assert removed.status_code == 200
        assert removed.json()["model"]["has_api_key"] is False

    async def events(session: AsyncSession) -> int:
        return int(await session.scalar(select(func.count(ModelStatusEvent.id))) or 0)

    assert arena.db(events) == 3  # registered, approved, back to pending


def test_test_endpoint_reports_latency_and_first_tokens(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    with arena.client() as client:
        token = sign_up(client)
        register(client, token, fake_upstream.base_url)
        result = client.post("/api/models/ada-7b/test", headers=bearer(token))
        assert result.status_code == 200
        body = result.json()
        assert body["ok"] is True and body["kind"] == "ok"
        assert body["latency_ms"] > 0 and body["first_token_ms"] is not None
        assert body["sample"].startswith("You asked:")
