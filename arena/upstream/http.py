"""The HTTP client every upstream call goes through: keep-alive HTTP/1.1 connections to model
endpoints, each response parsed by httptools (llhttp, in C) inside the event loop's read callback
and handed to the caller's callback there, chunk by chunk.

Why not httpx or aiohttp: a streamed answer is dozens of small chunks, and in the relay benchmark
what it cost to carry each one from the socket to the chat client decided how many battles one
worker could run. httpx's own transport (h11, pure Python) cost about 100 µs of CPU per chunk;
httpx on aiohttp's connections about 95 µs; aiohttp alone about 55 µs, mostly async iterators
and task wake-ups per chunk. Parsing in the read callback costs about 26 µs per chunk, the
request included (bench/relay.py, and the measurements in docs/benchmarks.md).

Through a forward proxy (arena/upstream/proxies.py), an https:// endpoint is reached through a
CONNECT tunnel and an http:// one by absolute-form requests. The proxy is asked for the address
the SSRF guard checked, not the host name, so that it cannot resolve the name to somewhere else
(DNS rebinding from the proxy's side of the network); TLS and Host still name the host, and the
certificate is checked against it. `proxy_resolves_names` asks for the name instead, for proxies
whose rules allow destinations by domain name.

What it does not do, on purpose: redirects (an endpoint that redirects fails; the address guard
checked the address it was given), cookies, HTTP/2. It asks for an uncompressed body and still
reads gzip and deflate.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import certifi
import httptools

from arena.upstream.proxies import Proxy, ProxyRoutes

# How long an idle upstream connection is kept for the next call to the same endpoint.
_KEEPALIVE_SECONDS = 30.0
# Idle connections kept per endpoint address; more are closed when they come back.
_IDLE_PER_ADDRESS = 1024
# Control characters but the tab (which RFC 9110 allows inside a field value).
_UNSAFE_IN_HEAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# The status line and headers of a response: past this, before their end, the response fails
# (httptools joins the pieces of a header line by concatenation, and llhttp sets no limit).
MAX_HEAD_BYTES = 65_536
# A compressed body is inflated into pieces of at most this size, each handed to the consumer,
# whose bounds then apply: one small piece of a gzip bomb cannot become a gigabyte at once.
INFLATED_PIECE_BYTES = 65_536
# Body bytes that may wait for the consumer before the connection stops reading.
_PENDING_BYTES = 262_144


def drop_history(exc: BaseException) -> None:
    """Forget `exc`'s traceback and the exceptions it replaced: a response keeps the failure
    that ended it on its futures, and the frames of a traceback hold the response (a future
    keeps the traceback it was failed with, too), so either would make a reference cycle that
    keeps a failed call's objects until the cycle collector passes, which is seldom while the
    app serves (arena/collector.py). Failures are reported by their text only."""
    exc.__traceback__ = None
    exc.__context__ = exc.__cause__ = None


class UpstreamHTTPError(Exception):
    """The exchange failed below HTTP's meaning: `connected` says whether the request reached a
    server (and so whether the endpoint could not be reached or broke off its answer)."""

    def __init__(
        self, message: str, *, connected: bool, timed_out: bool = False, certificate: bool = False
    ) -> None:
        super().__init__(message)
        self.connected = connected
        self.timed_out = timed_out
        self.certificate = certificate  # the endpoint's certificate was not trusted


_Key = tuple[str, str, int, str]


@dataclass(frozen=True)
class Target:
    """Where a request goes: `connect_host` is the address dialled (a pinned IP, or the host),
    while `host` names the server in the Host header and in TLS."""

    scheme: str
    host: str
    port: int
    connect_host: str
    path: str

    @property
    def address(self) -> _Key:
        """What a kept connection can serve: the same scheme, address dialled and server name."""
        return (self.scheme, self.connect_host, self.port, self.host)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


BodySink = Callable[[bytes], None]


class _BodyTooLong(Exception):
    """A body read whole went past its cap."""


class Response:
    """One response as it arrives. Until `stream` names a sink, body bytes wait in a list (and
    past `_PENDING_BYTES` the connection stops reading until then)."""

    def __init__(self, connection: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._connection = connection
        # The parser holds this response's callbacks and the response holds the parser: the
        # response drops it when it is over, so that neither waits for the cycle collector.
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._head: asyncio.Future[None] = loop.create_future()
        self._done: asyncio.Future[None] = loop.create_future()
        self._header_list: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._pending: list[bytes] = []  # as received: inflated when handed to the sink
        self._pending_bytes = 0
        self._reading_paused = False
        self._sink: BodySink | None = None
        self._decompress: Any = None
        self._close_delimited = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.received = False  # any byte of the response

    # -- what the connection feeds in

    def feed(self, data: bytes) -> None:
        self.received = True
        parser = self._parser
        if parser is None:
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._fail(exc.__context__ or exc)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamHTTPError(f"invalid HTTP from the endpoint: {exc}", connected=True))
        if not self._head.done():
            # Counted after the piece, so the head may take one read past the bound at most.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(
                    UpstreamHTTPError(
                        f"the response head exceeded {MAX_HEAD_BYTES} bytes", connected=True
                    )
                )

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._done.done():
            return
        if self._close_delimited and exc is None and self._head.done():
            self.on_message_complete()  # a body without length ends with the connection
            return
        reason = f": {exc!r}" if exc is not None else ""
        self._fail(UpstreamHTTPError(f"connection closed by the endpoint{reason}", connected=True))

    @property
    def failed(self) -> bool:
        return self._done.done() and self._done.exception() is not None

    def _fail(self, exc: BaseException) -> None:
        self._parser = None
        drop_history(exc)
        for future in (self._head, self._done):
            if not future.done():
                future.set_exception(exc)
        # Retrieved here so that a failure nobody awaits is not reported as never retrieved.
        self._done.exception()
        if not self._head.cancelled():
            self._head.exception()

    # -- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_list.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        if parser is None:  # failed while the parser was still at work
            return
        self.status = parser.get_status_code()
        headers: dict[str, str] = {}
        for name, value in self._header_list:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1").strip()
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self.headers = headers
        framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
        self._close_delimited = not framed and self.status not in (204, 304)
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            self._decompress = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decompress = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            self._fail(
                UpstreamHTTPError(f"unsupported content-encoding {encoding!r}", connected=True)
            )
            return
        if not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._done.done():
            return
        sink = self._sink
        if sink is None:
            self._pending.append(body)
            self._pending_bytes += len(body)
            if self._pending_bytes > _PENDING_BYTES and not self._reading_paused:
                self._reading_paused = True
                self._connection.pause_reading()
            return
        if self._decompress is not None:
            self._inflate(body, sink)
            return
        try:
            sink(body)
        except Exception as exc:  # the consumer's verdict on the body (garbage, too large)
            self._fail(exc)

    def _inflate(self, body: bytes, sink: BodySink) -> Exception | None:
        """Hand `body` to `sink` decompressed, a bounded piece at a time, until the sink has had
        it all; what goes wrong ends the response, and is returned."""
        decompress = self._decompress
        try:
            while True:
                piece = decompress.decompress(body, INFLATED_PIECE_BYTES)
                if piece:
                    sink(piece)
                if len(piece) < INFLATED_PIECE_BYTES:
                    return None  # all of `body` went in, and nothing is left inside to come out
                body = decompress.unconsumed_tail
        except zlib.error as exc:
            failure: Exception = UpstreamHTTPError(f"undecodable body: {exc}", connected=True)
        except Exception as exc:  # the consumer's verdict on the body (garbage, too large)
            failure = exc
        self._fail(failure)
        return failure

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._connection.resume_reading()

    def on_message_complete(self) -> None:
        if not self._done.done():
            reusable = self._parser is not None and self._parser.should_keep_alive()
            self._parser = None
            self._resume_reading()  # nothing more of this response will come
            self._done.set_result(None)
            self._connection.exchange_over(self, reusable=reusable)

    # -- what the caller uses

    def stream(self, sink: BodySink) -> None:
        """From now on each piece of the body goes to `sink` as it arrives, in the read
        callback; an exception from `sink` ends the response with that exception (raised here
        for what had already arrived)."""
        pending, self._pending = self._pending, []
        self._sink = sink
        for piece in pending:
            if self._decompress is not None:
                failure = self._inflate(piece, sink)
                if failure is not None:
                    raise failure
                continue
            try:
                sink(piece)
            except Exception as exc:
                self._fail(exc)
                raise
        self._pending_bytes = 0
        self._resume_reading()

    @property
    def ended(self) -> asyncio.Future[None]:
        """Done at the end of the body, or failed with what ended it early. Not to be
        cancelled: wait on it with asyncio.wait, or await `finished`."""
        return self._done

    async def finished(self) -> None:
        """Wait for the end of the body; raises what ended it early."""
        await asyncio.shield(self._done)

    async def read(self, cap: int) -> tuple[bytes, bool]:
        """The body up to `cap` bytes, and whether there was more (then the response ends
        there, and the rest is not read)."""
        pieces: list[bytes] = []
        room = cap

        def keep(piece: bytes) -> None:
            nonlocal room
            pieces.append(piece[:room])
            room -= len(piece)
            if room < 0:
                raise _BodyTooLong()

        try:
            self.stream(keep)
            await self.finished()
        except _BodyTooLong as exc:
            drop_history(exc)
            return b"".join(pieces), True
        return b"".join(pieces), False

    def close(self) -> None:
        """Done with it: a finished response has already given its connection back; one whose
        body is still coming takes its connection with it."""
        if not self._done.done():
            self._fail(UpstreamHTTPError("response abandoned", connected=True))
            self._connection.abort()
        elif self.failed:
            self._connection.abort()


class _Connection(asyncio.Protocol):
    def __init__(self, client: UpstreamClient, key: _Key) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # nothing was asked: a server talking out of turn is not reused
            self.abort()
            return
        response.feed(data)
        if response.failed:
            self.abort()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._open.discard(self)
        if self.response is not None:
            self.response.connection_lost(exc)
            self.response = None

    def exchange_over(self, response: Response, *, reusable: bool) -> None:
        if self.response is response:
            self.response = None
            if reusable and not self.closed:
                self.client._release(self)
            else:
                self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


_PROXY_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?\Z")


class _TunnelReply(asyncio.Protocol):
    """A proxy's answer to CONNECT: its head, at most MAX_HEAD_BYTES, and nothing after it
    (the endpoint speaks only after our TLS hello)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: asyncio.Future[bytes] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._received = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.head.done():
            return
        searched_from = max(0, len(self._received) - 3)
        self._received += data
        end = self._received.find(b"\r\n\r\n", searched_from)
        if end == -1 or end + 4 > MAX_HEAD_BYTES:
            if len(self._received) > MAX_HEAD_BYTES:
                self._fail(f"the proxy's answer to CONNECT exceeded {MAX_HEAD_BYTES} bytes")
            return
        if end + 4 != len(self._received):
            self._fail("the proxy sent bytes after its answer to CONNECT")
            return
        if self.transport is not None:
            self.transport.pause_reading()
        self.head.set_result(bytes(self._received[:end]))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("the proxy closed the connection before answering CONNECT")

    def _fail(self, message: str) -> None:
        if self.head.done():
            return
        self.head.set_exception(UpstreamHTTPError(message, connected=False))
        self.head.exception()  # retrieved: a failure nobody awaits any more is not reported
        if self.transport is not None:
            self.transport.abort()


def _tunnel_refusal(head: bytes, destination: str) -> str | None:
    """Why the proxy's answer to CONNECT opened no tunnel, or None when it did."""
    status_line = head.split(b"\r\n", 1)[0]
    match = _PROXY_STATUS_LINE.match(status_line)
    if match is None:
        shown = status_line[:80].decode("latin-1").encode("unicode_escape").decode("ascii")
        return f"the proxy did not answer CONNECT in HTTP ({shown!r})"
    status = int(match.group(1))
    if 200 <= status < 300:
        return None
    reason = _UNSAFE_IN_HEAD.sub("", (match.group(2) or b"").decode("latin-1"))[:80]
    if status == 407:
        return (
            f"the proxy asks for credentials (HTTP 407 {reason}); give them in the proxy URL, "
            "http://user:password@proxy:port"
        )
    return f"the proxy refused the tunnel to {destination} (HTTP {status} {reason})"


class UpstreamClient:
    """Pooled keep-alive connections per endpoint address; one per worker, shared by every call.
    `proxies` None (no proxy in the environment) leaves every call as direct as it was."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        proxies: ProxyRoutes | None = None,
        proxy_resolves_names: bool = False,
    ) -> None:
        self._tls = tls
        self._idle: dict[_Key, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._proxies = proxies
        self._proxy_resolves_names = proxy_resolves_names
        # (scheme, host, port) -> its proxy: the environment is read once, so is each answer
        self._routes: dict[tuple[str, str, int], Proxy | None] = {}

    def _proxy(self, target: Target) -> Proxy | None:
        if self._proxies is None:
            return None
        key = (target.scheme, target.host, target.port)
        if key not in self._routes:
            if len(self._routes) >= _IDLE_PER_ADDRESS:
                self._routes.clear()
            self._routes[key] = self._proxies.proxy_for(*key)
        return self._routes[key]

    def _proxy_authority(self, target: Target) -> str:
        """What the proxy is asked to reach: the checked address, or the name when the proxy
        resolves names."""
        host = target.host if self._proxy_resolves_names else target.connect_host
        return f"[{host}]:{target.port}" if ":" in host else f"{host}:{target.port}"

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=certifi.where())
        return self._tls

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.abort()
        self._open.clear()
        self._idle.clear()

    def post(self, target: Target, headers: dict[str, str], body: bytes) -> Post:
        """Start a request: on a kept-alive connection to the endpoint it is written now, before
        this returns; else it waits for `Post.response` to connect."""
        try:
            request = self._request_head(target, headers, len(body), self._proxy(target)) + body
        except UpstreamHTTPError as refused:
            return Post(self, target, b"", None, refused=refused)
        connection = self._idle_connection(target)
        sent = None if connection is None else self._send(connection, request)
        return Post(self, target, request, sent)

    def _send(self, connection: _Connection, request: bytes) -> Response:
        response = Response(connection, asyncio.get_running_loop())
        connection.response = response
        if connection.transport is None:
            raise UpstreamHTTPError("the connection was never made", connected=False)
        connection.transport.write(request)
        return response

    def _request_head(
        self, target: Target, headers: dict[str, str], length: int, proxy: Proxy | None
    ) -> bytes:
        if proxy is not None and target.scheme == "http":
            # Absolute form: the proxy connects to the authority in the request line.
            request_target = f"http://{self._proxy_authority(target)}{target.path}"
        else:
            request_target = target.path
        lines = [f"POST {request_target} HTTP/1.1", f"Host: {target.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "host"]
        if proxy is not None and target.scheme == "http" and proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
        for line in lines:
            # The last line of defence: registration refuses such values, but a CR or LF here
            # would let a stored value write headers (or a request) of its own.
            if _UNSAFE_IN_HEAD.search(line):
                raise UpstreamHTTPError(
                    f"refused to send a request head line with a control character: "
                    f"{line.split(':', 1)[0][:40]!r}",
                    connected=False,
                )
        lines += [f"Content-Length: {length}", "", ""]
        try:
            return "\r\n".join(lines).encode("latin-1")
        except UnicodeEncodeError:
            raise UpstreamHTTPError(
                "refused to send a request head with characters outside Latin-1", connected=False
            ) from None

    def _idle_connection(self, target: Target) -> _Connection | None:
        idle = self._idle.get(target.address)
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            transport = connection.transport
            usable = not connection.closed and transport is not None and not transport.is_closing()
            if usable and now - connection.idle_since < _KEEPALIVE_SECONDS:
                return connection
            connection.abort()
            self._open.discard(connection)
        return None

    async def _connect(self, target: Target, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if target.scheme == "https" else None
        connection = _Connection(self, target.address)
        proxy = self._proxy(target)
        try:
            async with asyncio.timeout(timeout):
                if proxy is None:
                    await loop.create_connection(
                        lambda: connection,
                        target.connect_host,
                        target.port,
                        ssl=tls,
                        server_hostname=target.host if tls is not None else None,
                    )
                elif tls is None:
                    await self._dial_proxy(proxy, lambda: connection)
                else:
                    await self._tunnel(proxy, target, tls, connection)
        except TimeoutError:
            # The proxy is not named: webhook owners read these messages (registry/webhooks.py).
            via = "" if proxy is None else " (through the proxy)"
            raise UpstreamHTTPError(
                f"connect timeout after {timeout}s{via}", connected=False, timed_out=True
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamHTTPError(
                f"certificate not trusted: {exc.verify_message or exc.reason}",
                connected=False,
                certificate=True,
            ) from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            via = "" if proxy is None else " through the proxy"
            raise UpstreamHTTPError(f"could not connect{via}: {exc!r}", connected=False) from None
        except UpstreamHTTPError as exc:
            drop_history(exc)
            raise
        self._open.add(connection)
        return connection

    async def _dial_proxy(
        self, proxy: Proxy, protocol: Callable[[], asyncio.Protocol]
    ) -> asyncio.Transport:
        # An https:// proxy is checked against the same authorities as the endpoints, as
        # requests and httpx do; its certificate failing is the operator's to fix, not the
        # owner's, so it is no "certificate" failure of the endpoint.
        tls = self._tls_context() if proxy.scheme == "https" else None
        try:
            transport, _ = await asyncio.get_running_loop().create_connection(
                protocol,
                proxy.host,
                proxy.port,
                ssl=tls,
                server_hostname=proxy.host if tls is not None else None,
            )
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamHTTPError(
                f"the proxy's own certificate is not trusted: {exc.verify_message or exc.reason}",
                connected=False,
            ) from None
        return transport

    async def _tunnel(
        self, proxy: Proxy, target: Target, tls: ssl.SSLContext, connection: _Connection
    ) -> None:
        """CONNECT through `proxy`, then TLS to the endpoint inside the tunnel."""
        loop = asyncio.get_running_loop()
        reply = _TunnelReply(loop)
        transport = await self._dial_proxy(proxy, lambda: reply)
        try:
            authority = self._proxy_authority(target)
            lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
            if proxy.authorization:
                lines.append(f"Proxy-Authorization: {proxy.authorization}")
            transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            refusal = _tunnel_refusal(await reply.head, authority)
            if refusal is not None:
                raise UpstreamHTTPError(refusal, connected=False)
            inner = await loop.start_tls(transport, connection, tls, server_hostname=target.host)
        except BaseException:
            transport.abort()
            raise
        if inner is None:
            raise UpstreamHTTPError("the tunnel closed during the TLS handshake", connected=False)
        connection.connection_made(inner)

    def _release(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= _IDLE_PER_ADDRESS:
            connection.abort()
            self._open.discard(connection)
            return
        connection.idle_since = asyncio.get_running_loop().time()
        idle.append(connection)


class Post:
    """A request on its way; `response` waits for the head of its answer."""

    def __init__(
        self,
        client: UpstreamClient,
        target: Target,
        request: bytes,
        sent: Response | None,
        *,
        refused: UpstreamHTTPError | None = None,
    ) -> None:
        self._client = client
        self._target = target
        self._request = request
        self._sent = sent
        self._refused = refused

    async def response(self, *, connect_timeout: float) -> Response:
        """The response, once its head is in. A request written on a kept-alive connection that
        the server had closed before reading it is sent again once, on a new connection."""
        if self._refused is not None:
            raise self._refused
        response, self._sent = self._sent, None
        for _attempt in (0, 1):
            reused = response is not None
            if response is None:
                connection = await self._client._connect(self._target, connect_timeout)
                response = self._client._send(connection, self._request)
            try:
                await asyncio.shield(response._head)
            except UpstreamHTTPError:
                if reused and not response.received:
                    response = None
                    continue
                raise
            except BaseException:
                response.close()
                raise
            return response
        raise AssertionError("unreachable")


def upstream_client() -> UpstreamClient:
    return UpstreamClient()
