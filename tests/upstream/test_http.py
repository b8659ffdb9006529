"""The upstream HTTP client on the wire: bodies framed every way HTTP/1.1 allows, compression the
arena did not ask for, connections the server closed, and answers that are not HTTP."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable

from arena.upstream.client import Answer, Endpoint, Limits, stream_chat
from arena.upstream.http import upstream_client
from tests.servers import read_request

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _events(*texts: str) -> bytes:
    wire = b""
    for text in texts:
        delta = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
        wire += f"data: {json.dumps(delta)}\n\n".encode()
    return wire + b"data: [DONE]\n\n"


def _closing(handler: Handler) -> Handler:
    """The handler, closing its connection however it ends (also when the test is over)."""

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return run


async def _answers(handler: Handler, calls: int = 1) -> list[Answer]:
    server = await asyncio.start_server(_closing(handler), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = Endpoint(base_url=f"http://127.0.0.1:{port}/v1", model="m")
    try:
        async with upstream_client() as client:
            answers = []
            for _ in range(calls):
                answers.append(
                    await stream_chat(
                        client,
                        endpoint,
                        [{"role": "user", "content": "hi"}],
                        Limits(first_token=5, idle=5, total=10),
                        lambda _: None,
                    )
                )
                await asyncio.sleep(0.05)  # lets a server's close arrive between calls
            return answers
    finally:
        server.close()


def _one(handler: Handler) -> Answer:
    return asyncio.run(_answers(handler))[0]


def test_a_gzip_body_is_read_though_an_uncompressed_one_was_asked() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        body = gzip.compress(_events("packed ", "answer"))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    answer = _one(handler)
    assert answer.ok, answer.failure
    assert answer.text == "packed answer"


def test_a_body_without_length_ends_with_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
        for piece in (_events("one ", "two")[:30], _events("one ", "two")[30:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.close()

    answer = _one(handler)
    assert answer.ok, answer.failure
    assert answer.text == "one two"


def test_a_kept_connection_the_server_closed_is_replaced() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        body = _events("fresh")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        # Keep-alive was not refused, yet the server closes the connection once idle.
        writer.close()

    answers = asyncio.run(_answers(handler, calls=3))
    assert [(a.ok, a.text) for a in answers] == [(True, "fresh")] * 3
    assert connections == 3


def test_a_request_a_kept_connection_drops_unanswered_is_sent_again_once() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        body = _events("again")
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        if connections == 1:
            # The next request on this connection is read, then dropped without an answer,
            # as a server does that times the connection out at that moment.
            await read_request(reader)
        else:
            await asyncio.sleep(5)
        writer.close()

    answers = asyncio.run(_answers(handler, calls=2))
    assert [(a.ok, a.text) for a in answers] == [(True, "again")] * 2
    assert connections == 2


def test_an_answer_that_is_not_http_is_a_protocol_failure() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"\x00\x01 this is no HTTP server \xff\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    answer = _one(handler)
    assert answer.failure is not None and answer.failure.kind == "protocol"
    assert "invalid HTTP" in answer.failure.detail


def test_an_encoding_the_client_cannot_read_is_a_protocol_failure() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: br\r\n"
            b"Content-Length: 4\r\n\r\nabcd"
        )
        await writer.drain()
        writer.close()

    answer = _one(handler)
    assert answer.failure is not None and answer.failure.kind == "protocol"
    assert "content-encoding" in answer.failure.detail


def test_a_refused_connection_is_a_connect_failure() -> None:
    async def go() -> Answer:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        async with upstream_client() as client:
            return await stream_chat(
                client,
                Endpoint(base_url=f"http://127.0.0.1:{port}/v1", model="m"),
                [{"role": "user", "content": "hi"}],
                Limits(),
                lambda _: None,
            )

    answer = asyncio.run(go())
    assert answer.failure is not None and answer.failure.kind == "connect"
    assert "ConnectionRefusedError" in answer.failure.detail
