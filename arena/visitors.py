"""Who is asking: the browser session (a random cookie); salted hashes of it and of the IP."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from arena.config import Settings

SESSION_COOKIE = "arena_session"


@dataclass(frozen=True)
class Visitor:
    session_hash: str
    ip_hash: str


def salted_hash(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def _is_session_id(value: str) -> bool:
    return 20 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()


def session_of(cookies: Mapping[str, str]) -> tuple[str, bool]:
    """The session id the request's cookies carry, or a new one; whether it is new."""
    session_id = cookies.get(SESSION_COOKIE, "")
    if _is_session_id(session_id):
        return session_id, False
    return secrets.token_urlsafe(24), True


def visitor_of(secret: str, session_id: str, client_host: str | None) -> Visitor:
    return Visitor(
        session_hash=salted_hash(secret, "session:" + session_id),
        ip_hash=salted_hash(secret, "ip:" + (client_host or "unknown")),
    )


def set_session_cookie(response: Response, session_id: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=settings.session_days * 86400,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


async def current_visitor(request: Request, response: Response) -> Visitor:
    """The visitor of this request; a new session cookie is set the first time.

    Async although it never awaits: FastAPI runs a plain `def` dependency in a worker thread,
    and that hand-off cost more than the two HMACs on every request."""
    session_id, new = session_of(request.cookies)
    if new:
        set_session_cookie(response, session_id, request.app.state.settings)
    client_host = request.client.host if request.client else None
    return visitor_of(request.app.state.secret_key, session_id, client_host)


VisitorDep = Annotated[Visitor, Depends(current_visitor)]
