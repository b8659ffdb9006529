"""How log lines look: uvicorn's text lines (the default), or one JSON object a line that carries
the id of the request it came from, the id also sent to the client as `X-Request-ID`."""

from __future__ import annotations

import logging
import re
import secrets
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

LogFormat = Literal["text", "json"]

REQUEST_ID_HEADER: Final = b"x-request-id"
# What a client or a reverse proxy may name its request: anything else gets an id of ours, so a
# log line never carries a stranger's bytes of unbounded length.
_WELL_FORMED_ID: Final = re.compile(rb"[A-Za-z0-9._:-]{1,64}")

_request_id: ContextVar[str | None] = ContextVar("arena_request_id", default=None)


class RequestIds:
    """ASGI layer, outermost: each HTTP request gets an id (the client's `X-Request-ID` when it
    is well formed, a new random one otherwise), set for everything the request logs, including
    the tasks it starts (they copy the context), and sent back in the response's header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == REQUEST_ID_HEADER), None)
        if given is not None and _WELL_FORMED_ID.fullmatch(given):
            request_id = given.decode()
        else:
            request_id = secrets.token_hex(8)
        header = (REQUEST_ID_HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        token = _request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


def install_request_id_records() -> None:
    """Every log record made from now on carries `request_id` (None outside a request). Set at
    the record's making, in the thread and context that logs it: the access log's lines are
    written by another thread (log_writing.py), which knows nothing of the request."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "carries_request_id", False):
        return

    def record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.request_id = _request_id.get()
        return record

    record_with_request_id.carries_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_with_request_id)


class JsonLines(JsonFormatter):
    """One JSON object a line: time (UTC), level, logger, message, request_id, and for the access
    log the request's client, method, path and status as fields of their own."""

    def __init__(self) -> None:
        super().__init__("%(message)s", json_ensure_ascii=False)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        super().add_fields(log_data, record, message_dict)
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            log_data["request_id"] = request_id
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            if len(record.args) == 5:
                client, method, path, http_version, status = record.args
                log_data.update(
                    client=client,
                    method=method,
                    path=path,
                    http_version=http_version,
                    status=status,
                )
        log_data.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any]:
    """The logging configuration `arena serve` gives uvicorn (and so every worker)."""
    if log_format == "text":
        return LOGGING_CONFIG
    handlers = {
        name: {"class": "logging.StreamHandler", "formatter": "json", "stream": stream}
        for name, stream in (("stderr", "ext://sys.stderr"), ("stdout", "ext://sys.stdout"))
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLines}},
        "handlers": handlers,
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        },
        # The arena's own loggers (arena.*) propagate here.
        "root": {"handlers": ["stderr"], "level": "INFO"},
    }
