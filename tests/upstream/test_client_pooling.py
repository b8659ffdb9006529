"""Keep-alive to endpoints: a finished streamed answer hands its connection back to the pool."""

from __future__ import annotations

import asyncio
import json
import time

from arena.upstream.client import Answer, Endpoint, Limits, stream_chat
from arena.upstream.http import upstream_client
from tests.fake_upstream import FakeUpstream
from tests.servers import read_request


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def _event(text: str) -> bytes:
    delta = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return _chunk(f"data: {json.dumps(delta)}\n\n".encode())


class CountingUpstream:
    """Streams "hello world" then [DONE]; `linger` keeps the body open after [DONE]."""

    def __init__(self, *, linger: bool) -> None:
        self.linger = linger
        self.connections = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                await read_request(reader)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                    + _event("hello ")
                    + _event("world")
                    + _chunk(b"data: [DONE]\n\n")
                )
                if self.linger:
                    await writer.drain()
                    await asyncio.sleep(30)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _three_answers(upstream: CountingUpstream) -> tuple[list[Answer], float]:
    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = Endpoint(base_url=f"http://127.0.0.1:{port}/v1", model="m")
    started = time.perf_counter()
    try:
        async with upstream_client() as client:
            answers = [
                await stream_chat(
                    client, endpoint, [{"role": "user", "content": "hi"}], Limits(), lambda _: None
                )
                for _ in range(3)
            ]
    finally:
        server.close()
    return answers, time.perf_counter() - started


def test_one_connection_serves_answer_after_answer() -> None:
    upstream = CountingUpstream(linger=False)
    answers, _ = asyncio.run(_three_answers(upstream))
    assert [a.text for a in answers] == ["hello world"] * 3
    assert all(a.ok for a in answers)
    assert upstream.connections == 1


def test_a_body_left_open_after_done_neither_fails_nor_stalls_the_answer() -> None:
    upstream = CountingUpstream(linger=True)
    answers, elapsed = asyncio.run(_three_answers(upstream))
    assert [(a.text, a.ok) for a in answers] == [("hello world", True)] * 3
    assert elapsed < 3 * 0.25 + 2  # the grace after [DONE], not the idle timeout
    assert upstream.connections == 3


def test_a_call_on_a_kept_connection_is_sent_before_it_is_awaited(
    fake_upstream: FakeUpstream,
) -> None:
    """The relay starts both calls of a turn without waiting for a task to run them: on a
    kept-alive connection the request is on the wire when stream_chat returns."""
    endpoint = Endpoint(base_url=fake_upstream.base_url, model="normal")

    def asked(prompt: str) -> bool:
        return any(
            r.body.get("messages", [{}])[-1].get("content") == prompt
            for r in fake_upstream.received
        )

    async def go() -> tuple[bool, bool, Answer]:
        async with upstream_client() as client:
            await stream_chat(
                client, endpoint, [{"role": "user", "content": "warm up"}], Limits(), lambda _: None
            )
            call = stream_chat(
                client, endpoint, [{"role": "user", "content": "early"}], Limits(), lambda _: None
            )
            # This loop does not run meanwhile: only a request already written reaches the server.
            deadline = time.monotonic() + 5
            while not asked("early") and time.monotonic() < deadline:
                time.sleep(0.01)
            sent_early = asked("early")
            cold = stream_chat(
                client,
                Endpoint(base_url=fake_upstream.base_url, model="normal:cold"),
                [{"role": "user", "content": "cold"}],
                Limits(),
                lambda _: None,
            )
            time.sleep(0.2)
            cold_sent_early = asked("cold")  # a new connection waits for the loop
            answer = await call
            await cold
            return sent_early, cold_sent_early, answer

    sent_early, cold_sent_early, answer = asyncio.run(go())
    assert sent_early
    assert not cold_sent_early
    assert answer.ok and answer.text
