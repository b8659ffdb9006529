"""The access log's lines are written by a thread: a stream that blocks stalls that thread, not
the caller; lines wait in order, the overflow is dropped and counted, and stopping writes what
waits and gives the logger its handlers back."""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arena.log_writing import LogWritingThread
from tests.servers import arena_serve, free_port


class BlockingStream(io.StringIO):
    """A stream whose writes wait until `open` is set, as a full pipe's do."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()

    def write(self, text: str) -> int:
        self.open.wait(30)
        return super().write(text)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    named = logging.getLogger(f"test.log_writing.{time.monotonic_ns()}")
    named.propagate = False
    named.setLevel(logging.INFO)
    yield named
    named.handlers.clear()


def _own(logger: logging.Logger) -> list[logging.Handler]:
    """The logger's handlers but pytest's capturing ones."""
    return [h for h in logger.handlers if type(h).__module__ != "_pytest.logging"]


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_blocked_stream_does_not_block_the_caller_and_loses_nothing(
    logger: logging.Logger,
) -> None:
    stream = BlockingStream()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    writing = LogWritingThread(logger).start()
    for n in range(100):
        logger.info("line %d", n)  # would wait 30 s here if the caller wrote the line
    assert _lines(stream) == []
    stream.open.set()
    writing.stop()
    assert _lines(stream) == [f"line {n}" for n in range(100)]
    assert _own(logger) == [handler]


def test_lines_beyond_capacity_are_dropped_counted_and_reported(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    stream = BlockingStream()
    logger.addHandler(logging.StreamHandler(stream))
    writing = LogWritingThread(logger, capacity=10).start()
    for n in range(30):
        logger.info("line %d", n)
    # One line may already be with the writing thread, waiting on the stream.
    assert writing.dropped in (19, 20)
    stream.open.set()
    deadline = time.monotonic() + 10
    while len(_lines(stream)) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="arena.log_writing"):
        logger.info("after")
    writing.stop()
    assert writing.dropped == 0
    assert _lines(stream)[-1] == "after"
    assert any(
        "lines of the" in r.getMessage() and "were dropped" in r.getMessage()
        for r in caplog.records
    )


def test_a_logger_without_handlers_or_already_taken_is_left_alone(
    logger: logging.Logger,
) -> None:
    LogWritingThread(logger).start().stop()
    assert _own(logger) == []
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    first = LogWritingThread(logger).start()
    taken = list(logger.handlers)
    assert handler not in taken
    LogWritingThread(logger).start().stop()  # a second app in the same process
    assert logger.handlers == taken
    first.stop()
    assert _own(logger) == [handler]


def test_arena_serve_still_writes_its_access_log(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ARENA_DATABASE_URL": f"sqlite:///{tmp_path / 'arena.db'}",
        "ARENA_DATA_DIR": str(tmp_path),
        "ARENA_PORT": str(free_port()),
    }
    env.pop("ARENA_ACCESS_LOG", None)
    output = tmp_path / "serve.log"
    with arena_serve(tmp_path, env, output=output) as base:
        for _ in range(3):
            assert httpx.get(f"{base}/healthz").status_code == 200
        deadline = time.monotonic() + 10
        while output.read_text().count('"GET /healthz HTTP/1.1" 200') < 3:
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.05)
