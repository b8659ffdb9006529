"""The bound on every request body, enforced outside the whole app while the body is read."""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arena.errors import BodyTooLarge, arena_error_response
from arena.pages import ALWAYS

_PLACEHOLDER = re.compile(r"\{[^{}/]+\}")


def _template(path: str) -> re.Pattern[str]:
    """A route's path with `{name}` placeholders as a pattern matching the paths it serves."""
    pieces = _PLACEHOLDER.split(path)
    return re.compile("[^/]+".join(re.escape(piece) for piece in pieces))


class BodyLimit:
    """Answers 413 to a request body over `max_bytes` before the app has read more than that.

    Outermost, around the battle fast lane, which reads its bodies outside the app's middleware.
    A declared Content-Length is judged before any of the body is read; within the limit the
    request goes on untouched, as does one without a body, because the server hands the app no
    more than the declared length (httptools and h11 frame the body by it). Only a body without
    a length of its own (chunked) is counted, as `receive()` delivers it. The 413 asks the server
    to close the connection after it, so that a client still sending stops.

    Starlette's RequestBodyLimitMiddleware answers in plain text without the limit, leaves the
    connection open and wraps every request's `receive` and `send`, each event of a battle's
    stream included; this one costs a request with a small declared body one pass over its
    headers.

    `larger_posts` names the paths whose POST bodies may be larger, with their own limit: a
    prompt with images attached (arena/images/) carries them in base64 inside its JSON. A path
    is written as its route is, `/api/chats/{chat_id}/turns`: a `{name}` stands for one
    non-empty path segment."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, larger_posts: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        posts = dict(larger_posts or {})
        self.larger_posts = {path: limit for path, limit in posts.items() if "{" not in path}
        self._templates = [(_template(path), limit) for path, limit in posts.items() if "{" in path]

    def _limit(self, scope: Scope) -> int:
        if scope["method"] != "POST" or not (self.larger_posts or self._templates):
            return self.max_bytes
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        exact = self.larger_posts.get(path)
        if exact is not None:
            return exact
        for template, limit in self._templates:
            if template.fullmatch(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self._limit(scope)
        declared: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if chunked:
            await self._counted(scope, receive, send, max_bytes)
            return
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:  # the server refuses these itself; should one pass, count it
                await self._counted(scope, receive, send, max_bytes)
                return
            if length > max_bytes:
                await self._refuse(scope, receive, send, max_bytes)
                return
        await self.app(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        received = 0
        refused = False
        started = False

        async def receive_within_limit() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    refused = True
                    if not started:
                        await self._refuse(scope, receive, send, max_bytes)
                    # To the app the client is gone: it stops reading, and what it answers
                    # instead is dropped below.
                    return {"type": "http.disconnect"}
            return message

        async def send_unless_refused(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, receive_within_limit, send_unless_refused)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        response = arena_error_response(BodyTooLarge(max_bytes))
        for name, value in ALWAYS.items():  # what the app's SecurityHeaders adds to every answer
            response.headers.setdefault(name, value)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
