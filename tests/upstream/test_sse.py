"""Reading server-sent events off an upstream body: any chunking of a stream gives the same events,
and a hostile stream is refused once past its bound, in linear time and bounded memory."""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arena.upstream.sse import SseData, SseError

# No deadline per example on a busy machine: the time a hostile stream takes is tested below,
# by the clock, with a bound that fails the old code by far.
_patient = settings(deadline=None)
# Bounds large enough for any valid stream drawn below.
ROOMY = {"max_event_bytes": 2**20, "max_body_bytes": 2**24}

_value = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"))
_line_end = st.sampled_from(["\n", "\r\n"])


@dataclass(frozen=True)
class Stream:
    wire: bytes
    data: list[str]  # what each event carries, in order


@st.composite
def _streams(draw: st.DrawFn) -> Stream:
    """A stream as servers write them: events of one or more data lines among comments, other
    fields and keep-alives, LF or CRLF line ends, the last event perhaps without its blank line
    or even its last line end."""
    lines: list[str] = []
    data: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["event", "event", "comment", "keep-alive"]))
        if kind == "comment":
            lines += [":" + draw(_value), ""]
        elif kind == "keep-alive":
            lines.append("")
        else:
            values = draw(st.lists(_value, min_size=1, max_size=4))
            for value in values:
                if draw(st.booleans()):
                    lines.append(draw(st.sampled_from(["event: delta", "id: 7", "retry: 10"])))
                if value and not value.startswith(" ") and draw(st.booleans()):
                    lines.append("data:" + value)  # the space after the colon is optional
                elif not value and draw(st.booleans()):
                    lines.append("data")  # a field without a colon has an empty value
                else:
                    lines.append("data: " + value)
            lines.append("")
            data.append("\n".join(values))
    if lines and lines[-1] == "" and data and draw(st.booleans()):
        lines.pop()  # the body ends right after the last event's data line
    wire = "".join(line + draw(_line_end) for line in lines)
    if draw(st.booleans()):
        wire = wire.removesuffix("\n")  # and perhaps before that line's end
    return Stream(wire.encode("utf-8"), data)


def _read(pieces: list[bytes], **bounds: int) -> list[str]:
    events: list[str] = []
    parser = SseData(events.append, **(bounds or ROOMY))
    for piece in pieces:
        parser.feed(piece)
    parser.end()
    return events


@_patient
@given(_streams(), st.lists(st.integers(0, 10_000)))
def test_any_chunking_gives_the_same_events(stream: Stream, cuts: list[int]) -> None:
    # Cuts land anywhere, inside a CRLF or a UTF-8 sequence too.
    points = sorted({cut % (len(stream.wire) + 1) for cut in cuts})
    edges = [0, *points, len(stream.wire)]
    pieces = [stream.wire[start:end] for start, end in zip(edges, edges[1:], strict=False)]
    assert _read([stream.wire]) == stream.data
    assert _read(pieces) == stream.data


@_patient
@given(_streams())
def test_a_stream_fed_a_byte_at_a_time_gives_the_same_events(stream: Stream) -> None:
    pieces = [stream.wire[i : i + 1] for i in range(len(stream.wire))]
    assert _read(pieces) == stream.data


def test_invalid_utf8_is_a_protocol_error() -> None:
    with pytest.raises(SseError) as refused:
        _read([b'data: {"x": "\xff\xfe"}\n\n'])
    assert refused.value.kind == "protocol"


def _fed_until_refused(parser: SseData, head: bytes, piece: bytes, most: int) -> int:
    """Bytes fed before the parser refused the stream; fails if it took `most` and more."""
    fed = 0
    with pytest.raises(SseError) as refused:
        parser.feed(head)
        fed += len(head)
        while fed < most:
            parser.feed(piece)
            fed += len(piece)
    assert refused.value.kind == "too_large"
    return fed


@_patient
@given(st.integers(1, 4096), st.integers(1024, 16_384))
def test_a_line_that_never_ends_is_refused_past_the_bound(size: int, bound: int) -> None:
    parser = SseData(lambda _: None, max_event_bytes=bound, max_body_bytes=2**30)
    head = b'data: {"x":"'
    fed = _fed_until_refused(parser, head, b"a" * size, most=8 * bound + size)
    assert fed <= len(head) + bound + size


@_patient
@given(st.integers(1, 64), st.integers(1024, 16_384))
def test_an_event_of_endless_data_lines_is_refused_past_the_bound(size: int, bound: int) -> None:
    parser = SseData(lambda _: None, max_event_bytes=bound, max_body_bytes=2**30)
    line = b"data: " + b"a" * size
    fed = _fed_until_refused(parser, b"", line + b"\r\n", most=8 * bound + len(line))
    assert fed // (len(line) + 2) * len(line) <= bound + len(line)  # line ends not counted


@_patient
@given(st.sampled_from([b"\n", b":\n", b": keep-alive\r\n\r\n", b"event: ping\n\n"]))
def test_a_body_of_nothing_but_keep_alives_is_refused_past_the_bound(piece: bytes) -> None:
    parser = SseData(lambda _: None, max_event_bytes=2**20, max_body_bytes=10_000)
    fed = _fed_until_refused(parser, b"", piece, most=10 * 10_000)
    assert fed <= 10_000 + len(piece)


_CLIENT_EVENT_BOUND = 6 * 65_536 + 65_536  # what the chat client allows one event by default


@pytest.mark.parametrize("size", [1, 64, 65_536])
def test_a_huge_line_costs_linear_time(size: int) -> None:
    parser = SseData(lambda _: None, max_event_bytes=_CLIENT_EVENT_BOUND, max_body_bytes=2**30)
    piece = b"a" * size
    started = time.perf_counter()
    _fed_until_refused(parser, b'data: {"x":"', piece, most=4 * _CLIENT_EVENT_BOUND)
    elapsed = time.perf_counter() - started
    # Copying the line so far for each piece took minutes for pieces of one byte.
    assert elapsed < 2.0, f"{elapsed:.2f} s"


@pytest.mark.parametrize("size", [64, 65_536])
def test_a_huge_line_takes_bounded_memory(size: int) -> None:
    parser = SseData(lambda _: None, max_event_bytes=_CLIENT_EVENT_BOUND, max_body_bytes=2**30)
    piece = b"a" * size
    tracemalloc.start()
    try:
        _fed_until_refused(parser, b'data: {"x":"', piece, most=16 * _CLIENT_EVENT_BOUND)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * _CLIENT_EVENT_BOUND, f"{peak} bytes"
