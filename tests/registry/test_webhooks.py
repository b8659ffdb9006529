"""Owner webhooks: set behind the SSRF guard, signed with a secret shown once, queued with each
status change of the owner's models, retried with backoff, bounded in time against a receiver
that never answers."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from arena.models import ModelStatus
from arena.registry import webhooks
from arena.registry.webhooks import backoff, status_event
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import ADMIN, bearer, register, sign_up


@dataclass
class Receiver:
    """An owner's webhook receiver on loopback: answers `fail_first` requests with 500 (or
    `hang` for ever), then 200; keeps what it was sent."""

    fail_first: int = 0
    hang: bool = False
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/arena"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.hang:
                    time.sleep(30)
                    return
                failing = len(receiver.received) <= receiver.fail_first
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(**options: Any) -> Receiver:
        started.append(Receiver(**options).start())
        return started[-1]

    yield start
    for one in started:
        one.stop()


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout} s for {what}")


def _verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    parts = dict(part.split("=", 1) for part in headers["x-arena-signature"].split(","))
    assert abs(int(parts["t"]) - time.time()) < 60
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())


def test_status_changes_reach_the_owner_signed(
    arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    receiver: Callable[..., Receiver],
) -> None:
    arena = arena_factory(webhook_retry_seconds=0.2)
    hook = receiver(fail_first=2)
    with arena.client() as client:
        token = sign_up(client)
        set_ = client.put("/api/owners/me/webhook", json={"url": hook.url}, headers=bearer(token))
        assert set_.status_code == 200, set_.text
        secret = set_.json()["secret"]
        assert secret.startswith("whsec_") and set_.json()["url"] == hook.url
        shown = client.get("/api/owners/me/webhook", headers=bearer(token))
        assert shown.json() == {"url": hook.url, "deliveries": []}
        assert secret not in shown.text

        assert register(client, token, fake_upstream.base_url).status_code == 201
        assert client.post("/api/admin/models/ada-7b/approve", headers=ADMIN).is_success
        paused = client.post(
            "/api/admin/models/ada-7b/pause", json={"reason": "maintenance"}, headers=ADMIN
        )
        assert paused.is_success

        def delivered() -> list[dict[str, Any]]:
            listed = client.get("/api/owners/me/webhook", headers=bearer(token)).json()
            return [d for d in listed["deliveries"] if d["delivered_at"]]

        # The receiver fails its first two requests: each is retried until it arrives.
        _until(lambda: len(delivered()) == 2, 30, "both notices delivered")
        attempts = {d["event"]: d["attempts"] for d in delivered()}
        assert set(attempts) == {"approved", "paused"} and sum(attempts.values()) == 4
        assert all(d["last_error"] is None for d in delivered())
        assert len(hook.received) == 4
        for headers, body in hook.received:
            _verify(secret, headers, body)
        pause_body = json.loads(next(b for h, b in hook.received if h["x-arena-event"] == "paused"))
        assert pause_body["model"] == "ada-7b" and pause_body["reason"] == "maintenance"
        assert pause_body["status"] == "paused" and pause_body["previous_status"] == "active"

        assert client.delete("/api/owners/me/webhook", headers=bearer(token)).status_code == 204
        assert client.get("/api/owners/me/webhook", headers=bearer(token)).json()["url"] is None
        client.post("/api/admin/models/ada-7b/resume", headers=ADMIN)
    time.sleep(3)  # a poll of the sender
    assert "resumed" not in [headers["x-arena-event"] for headers, _ in hook.received]


def test_webhook_urls_pass_the_ssrf_guard(arena_factory: Callable[..., Arena]) -> None:
    arena = arena_factory(allow_private_endpoints=False)
    with arena.client() as client:
        token = sign_up(client)
        for url, status in (
            ("http://169.254.169.254/latest/meta-data", 400),
            ("http://127.0.0.1:9/hook", 400),
            ("http://10.1.2.3/hook", 400),
            ("ftp://example.org/hook", 422),
            ("", 422),
        ):
            refused = client.put("/api/owners/me/webhook", json={"url": url}, headers=bearer(token))
            assert refused.status_code in (status, 422), (url, refused.text)
            assert refused.status_code >= 400
            if url:
                assert "webhook_url" in refused.text or "url" in refused.text, refused.text
        assert client.put("/api/owners/me/webhook", json={"url": "http://x"}).status_code == 401


def test_a_receiver_that_never_answers_holds_up_nothing(
    arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    receiver: Callable[..., Receiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks, "DELIVERY_TIMEOUT_SECONDS", 1.0)
    arena = arena_factory(webhook_retry_seconds=60)
    hook = receiver(hang=True)
    with arena.client() as client:
        token = sign_up(client)
        client.put("/api/owners/me/webhook", json={"url": hook.url}, headers=bearer(token))
        register(client, token, fake_upstream.base_url)
        client.post("/api/admin/models/ada-7b/approve", headers=ADMIN)
        _until(lambda: bool(hook.received), 10, "the attempt")
        started = time.monotonic()
        assert client.get("/healthz").status_code == 200
        assert time.monotonic() - started < 1

        def last_error() -> str | None:
            listed = client.get("/api/owners/me/webhook", headers=bearer(token)).json()
            error: str | None = listed["deliveries"][0]["last_error"]
            return error

        _until(lambda: last_error() is not None, 10, "the timeout recorded")
        assert last_error() == "no answer within 1 s"


def test_the_events_an_owner_is_told_of() -> None:
    assert status_event(ModelStatus.pending, ModelStatus.active, automatic=False) == "approved"
    assert status_event(ModelStatus.paused, ModelStatus.active, automatic=False) == "resumed"
    assert status_event(ModelStatus.active, ModelStatus.paused, automatic=False) == "paused"
    assert status_event(ModelStatus.active, ModelStatus.paused, automatic=True) == "auto_paused"
    assert status_event(ModelStatus.active, ModelStatus.retired, automatic=False) == "retired"
    assert status_event(ModelStatus.active, ModelStatus.pending, automatic=False) is None
    waits = [backoff(n, 30).total_seconds() for n in range(1, 12)]
    assert waits[:3] == [30, 60, 120] and max(waits) == 6 * 3600
