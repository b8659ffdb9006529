"""Log lines written by a thread of their own, for a logger the event loop calls on every request
(uvicorn's access log).

The event loop then pays only for the record: formatting it and writing it to its stream (a
system call per line, as `StreamHandler` flushes each one) happen in the writing thread, and a
stream that blocks (a full pipe, a stalled disk) stalls that thread, never the loop. At most
`capacity` records wait; those that come while it is full are dropped and counted, and the count
is logged as a warning once a record gets through again.
"""

from __future__ import annotations

import logging
import queue
from logging.handlers import QueueHandler, QueueListener
from typing import Any

log = logging.getLogger(__name__)


# How long stopping waits for the queued lines to be written before it gives up on them.
_STOP_SECONDS = 5.0


class _Enqueue(QueueHandler):
    def __init__(self, records: queue.Queue[Any]) -> None:
        super().__init__(records)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Formatting is the writing thread's work: the record goes as it is.
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            return
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            log.warning(
                "%d lines of the %s log were dropped: its stream could not keep up",
                dropped,
                record.name,
            )


class _Listener(QueueListener):
    def __init__(self, records: queue.Queue[Any], *handlers: logging.Handler) -> None:
        super().__init__(records, *handlers, respect_handler_level=True)
        self._records = records

    def stop(self) -> None:
        # QueueListener.stop would raise on a full queue and wait forever on a stream that
        # blocks for good; the thread is a daemon, so it is left to the process's end then.
        try:
            self._records.put(getattr(self, "_sentinel", None), timeout=_STOP_SECONDS)
        except queue.Full:
            return
        if self._thread is not None:
            self._thread.join(_STOP_SECONDS)
            self._thread = None


class LogWritingThread:
    """Moves `logger`'s handlers behind a queue and a thread that runs them, from `start` until
    `stop`, which writes what is still queued and gives the logger its handlers back. A logger
    with no handlers, or one already taken over, is left as it is."""

    def __init__(self, logger: logging.Logger, *, capacity: int = 10_000) -> None:
        self._logger = logger
        self._handlers: list[logging.Handler] = []
        self._records: queue.Queue[Any] = queue.Queue(capacity)
        self._enqueue = _Enqueue(self._records)
        self._listener: _Listener | None = None

    def start(self) -> LogWritingThread:
        handlers = list(self._logger.handlers)
        if not handlers or any(isinstance(h, _Enqueue) for h in handlers):
            return self
        self._handlers = handlers
        self._listener = _Listener(self._records, *handlers)
        self._listener.start()
        for handler in handlers:
            self._logger.removeHandler(handler)
        self._logger.addHandler(self._enqueue)
        return self

    @property
    def dropped(self) -> int:
        """Records dropped since the last one that got through."""
        return self._enqueue.dropped

    def stop(self) -> None:
        if self._listener is None:
            return
        self._logger.removeHandler(self._enqueue)
        for handler in self._handlers:
            self._logger.addHandler(handler)
        self._listener.stop()  # what is queued is written first
        self._listener = None
