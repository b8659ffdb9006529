"""The two requests every battle makes, served beneath FastAPI when nothing is wrong with them.

`POST /api/battles` and `GET /api/battles/{id}/stream` come once per battle each. Under load,
FastAPI's middleware, routing and dependency solving for them, and the middleware's wrapping of
every event sent, cost a worker more CPU than the battle's own work (bench/relay.py). This layer
sits outside the app's middleware and serves them with the same functions as the routes in
routes.py, the same headers and the same cookie.

A request it cannot serve as it stands goes to the app unchanged, before anything was counted
or stored: a body that is not a valid prompt (the app's 422 names the field), a stream request
without a session cookie or for a turn that cannot be started now (the app replays the turn or
says why not). Past that point its errors are the app's own answers: ArenaError as the app's
handler renders it, anything else as the logged 500.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arena.battles.relay import EventStreamResponse
from arena.battles.routes import SSE_HEADERS, TURN_NOT_STARTABLE, open_battle, start_turn
from arena.battles.schemas import PromptIn
from arena.errors import ArenaError, arena_error_response, unexpected_error_response
from arena.pages import ALWAYS
from arena.visitors import Visitor, session_of, set_session_cookie, visitor_of

_CREATE_PATH = "/api/battles"
_STREAM_PREFIX, _STREAM_SUFFIX = "/api/battles/", "/stream"
# A prompt body longer than this goes to the app, whose limits and messages apply.
_MAX_BODY_BYTES = 1_000_000


class BattleFastLane:
    def __init__(self, app: ASGIApp, state_of: Any) -> None:
        self.app = app
        self.state_of = state_of  # the application whose state the routes use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            if method == "POST" or method == "GET":
                path = _route_path(scope)
                if method == "POST" and path == _CREATE_PATH:
                    await self._create(scope, receive, send)
                    return
                if method == "GET" and path.startswith(_STREAM_PREFIX):
                    battle_id = path[len(_STREAM_PREFIX) : -len(_STREAM_SUFFIX)]
                    if path.endswith(_STREAM_SUFFIX) and battle_id and "/" not in battle_id:
                        await self._stream(scope, receive, send, battle_id)
                        return
        await self.app(scope, receive, send)

    async def _create(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        body, complete = await _read_body(receive)
        replay_receive = _replaying(body, complete, receive)
        if not complete or not _is_json(headers.get("content-type", "")):
            await self.app(scope, replay_receive, send)
            return
        try:
            prompt = PromptIn.model_validate_json(body).prompt
        except ValidationError:
            await self.app(scope, replay_receive, send)
            return
        state = self.state_of.state
        cookies = cookie_parser(headers.get("cookie", ""))
        session_id, new_session = session_of(cookies)
        visitor = _visitor(scope, state.secret_key, session_id)
        response: Response
        try:
            await state.rate_limiter.check("battle", visitor)
            battle_id = await open_battle(state, prompt, visitor, cookies)
        except Exception as exc:
            response = _error_response(exc)
        else:
            response = JSONResponse({"battle_id": battle_id}, status_code=201)
            if new_session:  # as the app does: the cookie comes with a battle, not an error
                set_session_cookie(response, session_id, state.settings)
        await _send(response, scope, receive, send)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, battle_id: str) -> None:
        session_id, new_session = session_of(cookie_parser(Headers(scope=scope).get("cookie", "")))
        if new_session:  # no battle of its own to stream: the app says why
            await self.app(scope, receive, send)
            return
        state = self.state_of.state
        visitor = _visitor(scope, state.secret_key, session_id)
        response: Response
        try:
            events = await start_turn(state, battle_id, visitor)
        except Exception as exc:
            response = _error_response(exc)
        else:
            if events is None:
                # The claim was tried and found no turn: the route replays or says why, without
                # trying it again.
                scope[TURN_NOT_STARTABLE] = True
                await self.app(scope, receive, send)
                return
            response = EventStreamResponse(events, headers=SSE_HEADERS)
        await _send(response, scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path as the app's routes match it: without the root path the app is mounted at."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if (
        root_path
        and path.startswith(root_path)
        and path[len(root_path) : len(root_path) + 1] in ("/", "")
    ):
        return path[len(root_path) :]
    return path


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json"


def _visitor(scope: Scope, secret_key: str, session_id: str) -> Visitor:
    client = scope.get("client")
    return visitor_of(secret_key, session_id, client[0] if client else None)


def _error_response(exc: Exception) -> Response:
    """What the app's handlers answer: ArenaError as it says, anything else as the logged 500."""
    if isinstance(exc, ArenaError):
        return arena_error_response(exc)
    return unexpected_error_response(exc)


async def _send(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    for name, value in ALWAYS.items():  # what the app's SecurityHeaders adds to every answer
        response.headers.setdefault(name, value)
    await response(scope, receive, send)


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body, or as much of it as the fast lane takes; whether that was all of it."""
    pieces: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(pieces), False
        piece = message.get("body", b"")
        pieces.append(piece)
        size += len(piece)
        if not message.get("more_body", False):
            return b"".join(pieces), True
        if size > _MAX_BODY_BYTES:
            return b"".join(pieces), False


def _replaying(body: bytes, complete: bool, receive: Receive) -> Receive:
    """`receive` for the app: what the fast lane read first, then the rest from the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay
