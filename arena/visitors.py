"""Who is asking: the browser session (a random cookie); salted hashes of it and of the IP."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

SESSION_COOKIE = "arena_session"


@dataclass(frozen=True)
class Visitor:
    session_hash: str
    ip_hash: str


def salted_hash(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def current_visitor(request: Request, response: Response) -> Visitor:
    """The visitor of this request; a new session cookie is set the first time.

    Async although it never awaits: FastAPI runs a plain `def` dependency in a worker thread,
    and that hand-off cost more than the two HMACs on every request."""
    secret: str = request.app.state.secret_key
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if not (20 <= len(session_id) <= 64 and session_id.replace("-", "").replace("_", "").isalnum()):
        session_id = secrets.token_urlsafe(24)
        settings = request.app.state.settings
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=settings.session_days * 86400,
            httponly=True,
            samesite="lax",
            secure=settings.cookie_secure,
        )
    return Visitor(
        session_hash=salted_hash(secret, "session:" + session_id),
        ip_hash=salted_hash(secret, "ip:" + _client_ip(request)),
    )


VisitorDep = Annotated[Visitor, Depends(current_visitor)]
