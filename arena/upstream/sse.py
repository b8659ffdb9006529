"""Server-sent events off an upstream body: the data of each event, bounded while it arrives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal


class SseError(Exception):
    """The body is not a stream the arena reads: garbled, or larger than its bounds allow."""

    def __init__(self, kind: Literal["protocol", "too_large"], detail: str) -> None:
        super().__init__(detail)
        self.kind: Literal["protocol", "too_large"] = kind
        self.detail = detail


class SseData:
    """Splits a body into the `data` of each event as the pieces arrive; each line is decoded as
    strict UTF-8 once it is whole (garbage is an error, a character split between pieces is not).

    Bounded while reading, in time linear in what arrives: a line whose end has not come, or the
    data lines of one event, past `max_event_bytes`, and the whole body (comments, keep-alives
    and blank lines included) past `max_body_bytes`, end the stream with an `SseError`.
    """

    def __init__(
        self, on_data: Callable[[str], None], *, max_event_bytes: int, max_body_bytes: int
    ) -> None:
        self._on_data = on_data
        self._max_event_bytes = max_event_bytes
        self._max_body_bytes = max_body_bytes
        self._body_left = max_body_bytes
        self._partial = bytearray()  # the start of a line whose end has not come yet
        self._data_lines: list[str] = []
        self._event_bytes = 0

    def feed(self, piece: bytes) -> None:
        self._body_left -= len(piece)
        if self._body_left < 0:
            raise SseError("too_large", f"stream exceeded {self._max_body_bytes} bytes")
        if b"\n" not in piece:
            self._keep_partial(piece)
            return
        lines = piece.split(b"\n")
        rest = lines.pop()
        if self._partial:
            self._partial += lines[0]
            lines[0] = bytes(self._partial)
            self._partial.clear()
        self._lines(lines)
        if rest:
            self._keep_partial(rest)

    def end(self) -> None:
        """The body is over: a last line without its end, and a last event without its blank
        line, still count."""
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._lines([line])
        self._dispatch()

    def _keep_partial(self, start: bytes) -> None:
        partial = self._partial
        partial += start
        if len(partial) > self._max_event_bytes:
            raise SseError("too_large", f"an event line exceeded {self._max_event_bytes} bytes")

    def _lines(self, lines: list[bytes]) -> None:
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line:
                self._dispatch()
                continue
            if line.startswith(b":"):
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SseError("protocol", f"invalid UTF-8 in stream: {exc}") from None
            name, _, value = text.partition(":")
            if name == "data":
                self._event_bytes += len(line)
                if self._event_bytes > self._max_event_bytes:
                    raise SseError(
                        "too_large", f"an event's data exceeded {self._max_event_bytes} bytes"
                    )
                self._data_lines.append(value[1:] if value.startswith(" ") else value)

    def _dispatch(self) -> None:
        if self._data_lines:
            data, self._data_lines = "\n".join(self._data_lines), []
            self._event_bytes = 0
            self._on_data(data)
