"""How a live turn's events reach the server: in order, the first at once, none lost when the
server makes a write wait, and a failed write stops the writing without touching the turn."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from arena.battles.relay import PushedBody, TurnEvents, TurnRunner
from arena.battles.turns import SidePlan, TurnEnd, TurnPlan
from arena.upstream.client import Answer, Endpoint, Limits, UpstreamEvent
from arena.upstream.http import UpstreamClient
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.sse import start_battle


class Server:
    """An ASGI `send` that records bodies; `hold` makes sends wait, as flow control does."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.open = asyncio.Event()
        self.open.set()
        self.fail: Exception | None = None
        self.bare_yield = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.bare_yield:
            await asyncio.sleep(0)
        await self.open.wait()
        if self.fail is not None:
            raise self.fail
        self.bodies.append(message["body"])


def test_writes_finish_in_the_call_when_the_server_does_not_wait() -> None:
    async def go() -> list[bytes]:
        server = Server()
        writer = PushedBody(server.send)
        writer.write(b"one")
        writer.write(b"two")
        written = list(server.bodies)  # before any other task ran
        await writer.flushed()
        return written

    assert asyncio.run(go()) == [b"one", b"two"]


@pytest.mark.parametrize("bare_yield", [False, True])
def test_writes_made_while_the_server_waits_follow_in_order(bare_yield: bool) -> None:
    async def go() -> tuple[list[bytes], list[bytes], bool]:
        server = Server()
        server.bare_yield = bare_yield
        server.open.clear()
        writer = PushedBody(server.send)
        for body in (b"a", b"b", b"c"):
            writer.write(body)
        await asyncio.sleep(0.01)
        held = list(server.bodies)
        server.open.set()
        await writer.flushed()
        return held, server.bodies, writer.broken.done()

    held, bodies, broken = asyncio.run(go())
    assert held == []
    assert b"".join(bodies) == b"abc"
    assert bodies[0] == b"a"  # what waited behind it went as one write
    assert not broken


def test_a_failed_write_ends_the_writing_and_says_why() -> None:
    async def go() -> tuple[list[bytes], BaseException | None]:
        server = Server()
        writer = PushedBody(server.send)
        writer.write(b"kept")
        server.fail = ConnectionResetError("gone")
        writer.write(b"lost")
        server.fail = None
        writer.write(b"dropped")
        await writer.flushed()
        return server.bodies, writer.broken.result() if writer.broken.done() else None

    bodies, why = asyncio.run(go())
    assert bodies == [b"kept"]
    assert isinstance(why, ConnectionResetError)


def test_a_write_that_waited_and_then_failed_says_why() -> None:
    async def go() -> BaseException | None:
        server = Server()
        server.open.clear()
        writer = PushedBody(server.send)
        writer.write(b"x")
        writer.write(b"y")
        server.fail = ConnectionResetError("gone")
        server.open.set()
        await writer.flushed()
        return writer.broken.result() if writer.broken.done() else None

    assert isinstance(asyncio.run(go()), ConnectionResetError)


def test_the_first_event_is_written_at_once_and_later_ones_together() -> None:
    async def go() -> tuple[list[bytes], list[bytes], list[bytes]]:
        server = Server()
        writer = PushedBody(server.send)
        events = TurnEvents()
        events.put({"side": "a", "type": "delta", "text": "early"})  # before a response takes it
        events.attach(writer.write)
        first = list(server.bodies)
        events.put({"side": "a", "type": "delta", "text": "x"})
        events.put({"side": "b", "type": "delta", "text": "y"})
        pending = list(server.bodies)
        await asyncio.sleep(0)
        together = list(server.bodies)
        events.put({"type": "end", "status": "ready"})
        events.close()
        assert events.over.done()
        return first, pending, together + server.bodies[len(together) :]

    first, pending, everything = asyncio.run(go())
    assert first == [b'data: {"side":"a","type":"delta","text":"early"}\n\n']
    assert pending == first
    assert everything[1] == (
        b'data: {"side":"a","type":"delta","text":"x"}\n\n'
        b'data: {"side":"b","type":"delta","text":"y"}\n\n'
    )
    assert everything[2] == b'data: {"type":"end","status":"ready"}\n\n'


def test_a_call_that_breaks_as_it_starts_fails_the_turn_not_the_request() -> None:
    """A side whose call raises before it is under way: the stream request still gets its
    events, and the turn ends failed, as if the call had broken in its task."""

    def chat(
        client: UpstreamClient,
        endpoint: Endpoint,
        messages: list[dict[str, str]],
        limits: Limits,
        emit: Callable[[UpstreamEvent], None],
    ) -> Any:
        if endpoint.model == "breaks":
            raise RuntimeError("broken before it began")

        async def answer() -> Answer:
            return Answer(text="fine", finish_reason="stop")

        return answer()

    finished: list[TurnPlan] = []

    async def finish(plan: TurnPlan, answers: dict[Any, Answer]) -> TurnEnd:
        finished.append(plan)
        return TurnEnd.ready

    def side(model: str) -> SidePlan:
        endpoint = Endpoint(base_url="http://127.0.0.1:9/v1", model=model)
        return SidePlan(model_id=1, endpoint=endpoint, conversation=[])

    async def go() -> list[bytes]:
        server = Server()
        runner = TurnRunner(UpstreamClient(), Limits(), finish, chat=chat)
        events = runner.start(TurnPlan("battle", 1, side("works"), side("breaks")))
        events.attach(PushedBody(server.send).write)
        await asyncio.wait_for(events.over, 5)
        return server.bodies

    bodies = asyncio.run(go())
    assert bodies == [b'data: {"type":"end","status":"failed"}\n\n']
    assert finished == []


def _chunked_body(sock: socket.socket) -> list[bytes]:
    """Read an HTTP/1.1 response to its end; the pieces of its chunked body, as sent."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, data = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    chunks: list[bytes] = []
    while True:
        while b"\r\n" not in data:
            data += sock.recv(65536)
        size_line, data = data.split(b"\r\n", 1)
        size = int(size_line, 16)
        while len(data) < size + 2:
            more = sock.recv(1 << 20)
            assert more, "the connection closed mid-body"
            data += more
        if size == 0:
            return chunks
        chunks.append(data[:size])
        data = data[size + 2 :]


def test_a_visitor_reading_slowly_gets_every_event_in_order(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    """Answers far larger than the socket buffers, to a visitor who stops reading for a while:
    the server makes writes wait, and what comes meanwhile follows in order, nothing lost."""
    size = 3_000_000
    arena = arena_factory(max_answer_bytes=size + 4000)
    arena.add_model("big-a", fake_upstream.base_url, f"huge:{size}")
    arena.add_model("big-b", fake_upstream.base_url, f"huge:{size}")
    with arena.client() as client:
        battle_id = start_battle(client)
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    address = urlsplit(arena.url)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(60)
        sock.connect((address.hostname, address.port))
        path = f"/api/battles/{battle_id}/stream"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: arena\r\nCookie: {cookie}\r\n\r\n".encode())
        time.sleep(2)  # not reading: the server's buffers fill, and its writes must wait
        chunks = _chunked_body(sock)
    body = b"".join(chunks).decode()
    events = [json.loads(line[6:]) for line in body.split("\n") if line.startswith("data: ")]
    assert events[-1] == {"type": "end", "status": "ready"}
    for side in ("a", "b"):
        text = "".join(e["text"] for e in events if e.get("side") == side and e["type"] == "delta")
        assert text == "A" * size
        assert [e["type"] for e in events if e.get("side") == side][-1] == "done"
    # What waited behind a held write went out as one.
    assert max(chunk.count(b"data: ") for chunk in chunks) > 10
