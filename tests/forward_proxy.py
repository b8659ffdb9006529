"""Outbound test parts: a test certificate authority (trustme), the fake upstream over TLS, and
a forward proxy on loopback that opens CONNECT tunnels and forwards absolute-form requests,
keeping what it was asked, or misbehaves on demand."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trustme

from tests.fake_upstream import FakeUpstream, start_fake_upstream
from tests.servers import free_port

# What a hostile proxy sends in place of an answer to CONNECT
PROXY_MODES = ("honest", "407", "garbage", "endless-head", "silent", "early-bytes")
# Bounds of the hostile modes, so that a client that does not stop is not fed forever
_ENDLESS_LINES = 20_000
_SILENT_SECONDS = 30.0


@dataclass
class ForwardProxy:
    """`mode` picks the behaviour (PROXY_MODES); with `credentials` ("user:password") a request
    without the matching Proxy-Authorization is answered 407."""

    port: int
    mode: str = "honest"
    credentials: str | None = None
    connects: list[str] = field(default_factory=list)  # CONNECT targets, in order
    forwarded: list[str] = field(default_factory=list)  # absolute-form request targets
    authorizations: list[str | None] = field(default_factory=list)

    tls: bool = False  # spoken to over TLS, as https://localhost

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    def url_with(self, credentials: str) -> str:
        return self.url.replace("://", f"://{credentials}@", 1)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._one_connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _one_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)
        }
        authorization = headers.get("proxy-authorization")
        self.authorizations.append(authorization)
        if self.mode == "silent":
            await asyncio.sleep(_SILENT_SECONDS)
            return
        if self.mode == "garbage":
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
            await writer.drain()
            return
        if self.mode == "endless-head":
            writer.write(b"HTTP/1.1 200 Connection established\r\n")
            for _ in range(_ENDLESS_LINES):
                writer.write(b"X-Filler: " + b"a" * 1000 + b"\r\n")
                await writer.drain()
            return
        if self.mode == "407" or (
            self.credentials is not None and authorization != _basic(self.credentials)
        ):
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
            )
            await writer.drain()
            return
        if method == "CONNECT":
            self.connects.append(target)
            host, _, port = target.rpartition(":")
            upstream = await asyncio.open_connection(host.strip("[]"), int(port))
            answer = b"HTTP/1.1 200 Connection established\r\n\r\n"
            if self.mode == "early-bytes":
                answer += b"\x16\x03\x01 not from the endpoint"
            writer.write(answer)
            await _pipe_both((reader, writer), upstream)
            return
        self.forwarded.append(target)
        url = urlsplit(target)
        upstream = await asyncio.open_connection(url.hostname, url.port or 80)
        # A proxy does not pass its own credentials on.
        kept = [line for line in lines if not line.lower().startswith("proxy-authorization:")]
        upstream[1].write("\r\n".join([request_line, *kept]).encode("latin-1"))
        await _pipe_both((reader, writer), upstream)


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _pipe_both(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    await asyncio.gather(_pipe(client[0], upstream[1]), _pipe(upstream[0], client[1]))


@contextlib.contextmanager
def running_proxy(
    mode: str = "honest", credentials: str | None = None, tls: ssl.SSLContext | None = None
) -> Iterator[ForwardProxy]:
    """A ForwardProxy listening on loopback in a thread of its own, until the block ends; over
    TLS with `tls` (a server context)."""
    proxy = ForwardProxy(port=free_port(), mode=mode, credentials=credentials, tls=tls is not None)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Future[None] | None = None

    async def serve() -> None:
        nonlocal stop
        stop = loop.create_future()
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", proxy.port, ssl=tls)
        ready.set()
        async with server:
            await stop
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise TimeoutError("the forward proxy did not start")
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(lambda: stop is not None and stop.set_result(None))
        thread.join(timeout=10)
        loop.close()


@dataclass(frozen=True)
class Authority:
    """A certificate authority of the tests' own, and its certificate as a PEM file."""

    ca: trustme.CA
    bundle: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def make_authority(folder: Path, name: str) -> Authority:
    ca = trustme.CA(organization_name=name)
    bundle = folder / f"{name}.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return Authority(ca, bundle)


@pytest.fixture(scope="session")
def test_authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return make_authority(tmp_path_factory.mktemp("ca"), "arena-test-ca")


def _serve_tls(authority: Authority) -> Iterator[FakeUpstream]:
    upstream, thread, loop = start_fake_upstream(tls=authority.server_context())
    yield upstream
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def tls_upstream(test_authority: Authority) -> Iterator[FakeUpstream]:
    """The fake upstream at https://localhost:PORT/v1, its certificate signed by the test CA."""
    yield from _serve_tls(test_authority)


@pytest.fixture(scope="session")
def rogue_tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstream]:
    """The fake upstream over TLS with a certificate from a CA nobody trusts."""
    yield from _serve_tls(make_authority(tmp_path_factory.mktemp("rogue"), "rogue-ca"))


@pytest.fixture
def forward_proxy() -> Iterator[Callable[..., ForwardProxy]]:
    """Start forward proxies (mode, credentials) for the test; all stop at its end."""
    with contextlib.ExitStack() as stack:

        def start(
            mode: str = "honest", credentials: str | None = None, tls: ssl.SSLContext | None = None
        ) -> ForwardProxy:
            return stack.enter_context(running_proxy(mode, credentials, tls))

        yield start
