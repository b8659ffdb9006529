"""The HTTP/1.1 protocol the arena is served with: uvicorn's httptools protocol, with a deadline
and a size bound on each request head."""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from arena.config import Settings

# What `uvicorn --http` takes, for a command line that does not go through `arena serve`.
IMPORT_PATH = "arena.http_protocol:ArenaHttpProtocol"


@dataclass(frozen=True)
class HeadLimits:
    timeout: float
    max_bytes: int


@functools.cache
def head_limits() -> HeadLimits:
    """From the ARENA_* variables each worker builds its app from, read once per process (uvicorn
    makes the protocol from its class, so there is no app or settings object to take them from)."""
    settings = Settings()
    return HeadLimits(settings.request_head_timeout, settings.max_request_head_bytes)


class ArenaHttpProtocol(HttpToolsProtocol):
    """Closes a connection whose request head (request line and headers) is not complete within
    ARENA_REQUEST_HEAD_TIMEOUT seconds, counted from the connection's opening for its first
    request and from the read that brought the first bytes of the head for each later one
    (uvicorn's keep-alive timeout bounds the wait before those), and answers 431 to a head over
    ARENA_MAX_REQUEST_HEAD_BYTES.

    uvicorn bounds neither with httptools: its keep-alive timer runs only between requests, and
    it and httptools gather a head's URL and header values by concatenation, without a limit.
    Its h11 protocol bounds the size (h11_max_incomplete_event_size) but not the time.

    A head that arrives whole in one read, as nearly all do, sets no timer: the deadline is set
    only when a read ends inside a head, so a request on a kept-alive connection costs a few
    attribute writes."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.head_limits = head_limits()
        self.head_deadline: asyncio.TimerHandle | None = None
        # Whether a head has begun and is not complete; how many heads have completed on this
        # connection; how many bytes of the current head have been counted.
        self.in_head = False
        self.heads_completed = 0
        self.head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        was_in_head, completed = self.in_head, self.heads_completed
        super().data_received(data)
        if not self.in_head:
            return
        self._arm_head_deadline()
        # Counted when all of `data` is one head's: it began before and did not end in this read.
        # The read a head begins in is not counted, so the bound is max_bytes plus one read (the
        # event loop reads at most 256 KiB at a time).
        if was_in_head and completed == self.heads_completed:
            self.head_bytes += len(data)
            if self.head_bytes > self.head_limits.max_bytes and not self.transport.is_closing():
                self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.heads_completed += 1
        self.head_bytes = 0
        if self.head_deadline is not None:
            self._cancel_head_deadline()
        super().on_headers_complete()

    def _arm_head_deadline(self) -> None:
        if self.head_deadline is None:
            self.head_deadline = self.loop.call_later(
                self.head_limits.timeout, self._head_timed_out
            )

    def _cancel_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_timed_out(self) -> None:
        self.head_deadline = None
        # Closed without an answer, as uvicorn's keep-alive timeout and nginx's
        # client_header_timeout do: a client this slow is not waiting for one.
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse_head(self) -> None:
        self._cancel_head_deadline()
        body = json.dumps(
            {
                "detail": (
                    "The request line and headers are over this server's limit of "
                    f"{self.head_limits.max_bytes} bytes; send fewer or shorter headers "
                    "(cookies included)."
                )
            }
        ).encode()
        head = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
            ]
        )
        self.transport.write(b"".join(head) + body)
        self.transport.close()
