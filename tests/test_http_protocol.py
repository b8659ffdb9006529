"""A request head must arrive whole within ARENA_REQUEST_HEAD_TIMEOUT seconds and within
ARENA_MAX_REQUEST_HEAD_BYTES: connections that hold half a head are closed, an endless header
line is cut off, and everyone else is served meanwhile."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from arena.http_protocol import ArenaHttpProtocol, HeadLimits
from tests.arena_process import ArenaProcess
from tests.conftest import make_settings
from tests.servers import arena_serve, free_port

HEAD_TIMEOUT = 3.0
# Generous: the machine may be busy, and the server closes 200 connections at once.
SLACK = 10.0
HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: half-"
WHOLE_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture(scope="module")
def arena_url(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server process of its own, with a short head deadline."""
    folder = tmp_path_factory.mktemp("head")
    shutil.copyfile(sqlite_template, folder / "arena.db")
    settings = make_settings(
        f"sqlite:///{folder / 'arena.db'}", folder, request_head_timeout=HEAD_TIMEOUT
    )
    process = ArenaProcess(settings, folder / "arena.log").start()
    yield process.url
    process.stop()


async def _connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    return await asyncio.open_connection(address.hostname, address.port)


async def _closed_after(reader: asyncio.StreamReader, started: float) -> tuple[float, bytes]:
    """Seconds from `started` until the server closed the connection, and what it sent first."""
    received = bytearray()
    try:
        while piece := await reader.read(65536):
            received += piece
    except ConnectionResetError:
        pass
    return time.monotonic() - started, bytes(received)


async def _served_meanwhile(url: str, until: asyncio.Event) -> int:
    """Ordinary requests, each on a fresh connection, until `until` is set: how many succeeded."""
    served = 0
    while not until.is_set():
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response = await client.get("/healthz")
        assert response.status_code == 200, response.text
        served += 1
        await asyncio.sleep(0.25)
    return served


async def _hold_half_heads(url: str, count: int) -> tuple[list[tuple[float, bytes]], int]:
    connections = [await _connect(url) for _ in range(count)]
    started = time.monotonic()
    for _reader, writer in connections:
        writer.write(HALF_HEAD)
    # One more, kept alive after a whole request, then half of the next head: uvicorn's own
    # keep-alive timer stops at the first byte of it.
    reader, writer = await _connect(url)
    writer.write(WHOLE_HEAD)
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    await reader.readexactly(len(b'{"status":"ok"}'))
    writer.write(HALF_HEAD)
    connections.append((reader, writer))

    done = asyncio.Event()
    meanwhile = asyncio.create_task(_served_meanwhile(url, done))
    try:
        closed = await asyncio.wait_for(
            asyncio.gather(*(_closed_after(r, started) for r, _w in connections)),
            HEAD_TIMEOUT + SLACK,
        )
    finally:
        done.set()
        served = await meanwhile
        for _reader, writer in connections:
            writer.close()
    return closed, served


def test_half_open_heads_are_closed_while_others_are_served(arena_url: str) -> None:
    closed, served = asyncio.run(_hold_half_heads(arena_url, 200))
    assert len(closed) == 201
    # Closed by the deadline, without an answer, and not before it.
    assert all(received == b"" for _seconds, received in closed)
    assert min(seconds for seconds, _received in closed) > HEAD_TIMEOUT - 0.5
    assert served >= 4


async def _slow_head(url: str, pause: float) -> bytes:
    reader, writer = await _connect(url)
    for line in WHOLE_HEAD.split(b"\r\n")[:-1]:
        writer.write(line + b"\r\n")
        await writer.drain()
        await asyncio.sleep(pause)
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    return answer


def test_a_slow_head_within_the_deadline_is_served(arena_url: str) -> None:
    # Four pieces a quarter of a second apart: a second in all, within three.
    answer = asyncio.run(_slow_head(arena_url, 0.25))
    assert answer.startswith(b"HTTP/1.1 200")


def _endless_header(url: str) -> tuple[bytes, int]:
    """Sends one header line of up to 64 MB; what came back, and how much was sent."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    sent = 0
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        piece = b"a" * 65536
        try:
            while sent < 64 * 2**20:
                sock.sendall(piece)
                sent += len(piece)
        except ConnectionError:  # closed by the server: what it answered is still to be read
            pass
        answer = bytearray()
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return bytes(answer), sent


def test_an_endless_header_line_is_cut_off(arena_url: str) -> None:
    answer, sent = _endless_header(arena_url)
    # Cut off long before 64 MB: the limit, plus what the sockets' buffers took in meanwhile.
    assert sent < 32 * 2**20, sent
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"65536 bytes" in answer
    with httpx.Client(base_url=arena_url) as client:
        assert client.get("/healthz").status_code == 200


@pytest.mark.slow
def test_arena_serve_closes_half_open_heads(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENA_")}
    env |= {
        "ARENA_DATA_DIR": str(tmp_path),
        "ARENA_PORT": str(free_port()),
        "ARENA_REQUEST_HEAD_TIMEOUT": str(HEAD_TIMEOUT),
    }
    with arena_serve(tmp_path, env) as base:
        closed, served = asyncio.run(_hold_half_heads(base, 5))
    assert all(received == b"" for _seconds, received in closed)
    assert served >= 4


# ---------------------------------------------------------------- the parser, in-process


async def _echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body and answers with its length."""
    size = 0
    more = True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Transport(asyncio.Transport):
    """What the protocol writes, and whether it closed the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


SMALL_HEAD = 4096
COOKIE = b"Cookie: arena_session=" + b"c" * 3500 + b"\r\n"
PIPELINED = (
    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n"
    + b"b" * 3000
    + b"GET /b HTTP/1.1\r\nHost: x\r\n"
    + COOKIE
    + b"\r\n"
    + b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    + COOKIE
    + b"\r\n"
    + b"bb8\r\n"
    + b"d" * 3000
    + b"\r\n0\r\n\r\n"
)


# The event loop reads at most 256 KiB at a time; the pieces here are smaller still.
MAX_READ = 65536


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at `cuts` and wherever a piece would exceed MAX_READ."""
    bounds = sorted(
        {0, len(data), *(cut % len(data) for cut in cuts), *range(0, len(data), MAX_READ)}
    )
    return [data[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


async def _feed(pieces: list[bytes]) -> tuple[_Transport, int]:
    """Feeds `pieces` to a protocol whose heads may take SMALL_HEAD bytes, one read each, letting
    the app run between them; what it wrote, and how many bytes it took before closing."""
    config = Config(app=_echo_length, lifespan="off", log_level="warning", access_log=False)
    config.load()
    protocol = ArenaHttpProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    protocol.head_limits = HeadLimits(timeout=30, max_bytes=SMALL_HEAD)
    transport = _Transport()
    protocol.connection_made(transport)
    taken = 0
    for piece in pieces:
        if transport.closed:
            break
        protocol.data_received(piece)
        taken += len(piece)
        for _ in range(5):
            await asyncio.sleep(0)
    for _ in range(20):
        await asyncio.sleep(0)
    closed_by_server = transport.closed
    protocol.connection_lost(None)
    transport.closed = closed_by_server
    return transport, taken


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(PIPELINED)), max_size=40))
def test_heads_near_the_limit_pass_however_they_are_cut(cuts: list[int]) -> None:
    """Three pipelined requests, two of whose heads are near the limit, one after a body: the
    head count never takes in another request's bytes, wherever the reads end."""
    transport, _taken = asyncio.run(_feed(_pieces(PIPELINED, cuts)))
    answers = bytes(transport.written)
    assert re.findall(rb"HTTP/1.1 (\d+) .*?\r\n\r\n(\d+)", answers, re.DOTALL) == [
        (b"200", b"3000"),
        (b"200", b"0"),
        (b"200", b"3000"),
    ]
    assert not transport.closed


ENDLESS = b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"e" * 2**20


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(ENDLESS)), min_size=1, max_size=60))
def test_an_endless_head_is_cut_however_it_is_cut(cuts: list[int]) -> None:
    pieces = _pieces(ENDLESS, cuts)
    transport, taken = asyncio.run(_feed(pieces))
    assert bytes(transport.written).startswith(b"HTTP/1.1 431"), bytes(transport.written)[:200]
    assert transport.closed
    # The limit, plus the read in which the head began, plus the read that went over.
    assert taken <= SMALL_HEAD + 2 * max(len(piece) for piece in pieces)
