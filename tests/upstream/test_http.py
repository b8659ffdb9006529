"""The upstream HTTP client on the wire: bodies framed every way HTTP/1.1 allows, compression the
arena did not ask for, connections the server closed, answers that are not HTTP, and heads or
bodies that would fill the worker's memory."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from arena.upstream.client import Answer, Endpoint, Limits, stream_chat
from arena.upstream.http import MAX_HEAD_BYTES, Target, upstream_client
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


async def _answers(handler: Handler, calls: int = 1, limits: Limits | None = None) -> list[Answer]:
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
                        limits or Limits(first_token=5, idle=5, total=10),
                        lambda _: None,
                    )
                )
                await asyncio.sleep(0.05)  # lets a server's close arrive between calls
            return answers
    finally:
        server.close()


def _one(handler: Handler, limits: Limits | None = None) -> Answer:
    return asyncio.run(_answers(handler, limits=limits))[0]


def _peak_memory(call: Callable[[], Answer]) -> tuple[Answer, int]:
    """What `call` answers, and the most memory Python held meanwhile beyond what it held before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        answer = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return answer, peak - before


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


def test_a_gzip_body_that_inflates_to_many_pieces_is_read_whole() -> None:
    texts = [f"{n:04d}" + "x" * 1000 for n in range(300)]  # about 350 KB of events once inflated

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        body = gzip.compress(_events(*texts))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()

    answer = _one(handler, Limits(first_token=5, idle=5, total=10, max_answer_bytes=1_000_000))
    assert answer.ok, answer.failure
    assert answer.text == "".join(texts)


def test_a_header_that_never_ends_fails_the_answer_at_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Padding: ")
        while True:  # until the client goes away
            writer.write(b"a" * 65_536)
            await writer.drain()
            await asyncio.sleep(0)

    started = time.perf_counter()
    answer, peak = _peak_memory(lambda: _one(handler))
    assert answer.failure is not None and answer.failure.kind == "protocol"
    assert f"head exceeded {MAX_HEAD_BYTES} bytes" in answer.failure.detail
    # Not left to the first-token timeout (5 s), nor to fill the memory meanwhile.
    assert time.perf_counter() - started < 2.5
    assert peak < 2 * 2**20, f"{peak / 2**20:.1f} MB"


def _gzip_bomb(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(2**20)
    return b"".join([*(packer.compress(zeros) for _ in range(size // len(zeros))), packer.flush()])


@pytest.mark.parametrize(
    ("status", "content_type", "kind"),
    [
        (200, "text/event-stream", "too_large"),
        (200, "application/json", "too_large"),
        (500, "application/json", "status"),
    ],
)
def test_a_gzip_bomb_is_inflated_a_bounded_piece_at_a_time(
    status: int, content_type: str, kind: str
) -> None:
    bomb = _gzip_bomb(48 * 2**20)  # about 48 KB, one read, 48 MB once inflated

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, content_type.encode(), len(bomb), bomb)
        )
        await writer.drain()

    answer, peak = _peak_memory(lambda: _one(handler))
    assert answer.failure is not None and answer.failure.kind == kind, answer.failure
    # Default limits: an event or a JSON body is cut at 6 x 64 KiB + 64 KiB, an error body at 4 KiB.
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MB"


# The arena runs on uvloop (uvicorn's choice when it is installed); the tests on asyncio's own loop.
@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_a_body_nobody_reads_yet_waits_in_the_socket_not_in_memory(
    run: Callable[[Awaitable[tuple[int, bytes, bool]]], tuple[int, bytes, bool]],
) -> None:
    body = bytes(32 * 2**20)  # more than the kernel's buffers on both ends hold
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:  # a thread, so that what it sends is not counted as the client's
        connection, _ = listener.accept()
        with connection:
            connection.recv(65_536)  # the request, small enough for one read
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            connection.sendall(body)
            connection.recv(1)  # until the client closes

    async def go() -> tuple[int, bytes, bool]:
        target = Target("http", "127.0.0.1", port, "127.0.0.1", "/v1/chat/completions")
        async with upstream_client() as client:
            post = client.post(target, {}, b"{}")
            response = await post.response(connect_timeout=5)
            tracemalloc.start()
            try:
                await asyncio.sleep(0.5)  # the body keeps coming; nothing asks for it yet
                _, waiting = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            raw, more = await response.read(len(body) + 1)
            response.close()
            return waiting, raw, more

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        waiting, raw, more = run(go())
    finally:
        listener.close()
    server.join(timeout=10)
    assert waiting < 4 * 2**20, f"{waiting / 2**20:.1f} MB held before the body was asked for"
    assert (len(raw), more) == (len(body), False)
    assert raw == body
