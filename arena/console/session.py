"""Signing in to the console: a cookie that expires, carries the form token, and dies with the
admin token it was made from.

The cookie is a Fernet token (encrypted and authenticated with the arena's secret key, with its
own time of issue) of {"csrf": ..., "admin": a fingerprint of ARENA_ADMIN_TOKEN}. It is HttpOnly
(no script reads it), SameSite=Strict (no other site's page sends it) and scoped to /admin; a
new ARENA_ADMIN_TOKEN ends every session. Every form carries the session's `csrf` value, checked
in constant time before any action: the second wall, should a browser ignore SameSite.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Annotated, Final

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Depends, Form, Request, Response

from arena.config import Settings
from arena.errors import NotAllowed, Unauthenticated

CONSOLE_COOKIE: Final = "arena_console"
CONSOLE_PATH: Final = "/admin"
SESSION_SECONDS: Final = 8 * 3600


@dataclass(frozen=True)
class ConsoleSession:
    csrf: str


class SignInNeeded(Unauthenticated):
    """No valid console cookie: pages answer with the sign-in form instead."""

    def __init__(self) -> None:
        super().__init__("Sign in to the console with the admin token (ARENA_ADMIN_TOKEN).")


def _fingerprint(admin_token: str) -> str:
    return hashlib.sha256(b"arena-console:" + admin_token.encode()).hexdigest()[:32]


def _fernet(request: Request) -> Fernet:
    return Fernet(request.app.state.secret_key.encode())


def _admin_token(request: Request) -> str:
    settings: Settings = request.app.state.settings
    token = settings.resolved_admin_token()
    if not token:
        raise NotAllowed("The console is off: the operator must set ARENA_ADMIN_TOKEN.")
    return token


def start_session(request: Request, response: Response) -> None:
    """Set a new session cookie on `response` (after the admin token was checked)."""
    settings: Settings = request.app.state.settings
    payload = {"csrf": secrets.token_urlsafe(24), "admin": _fingerprint(_admin_token(request))}
    response.set_cookie(
        CONSOLE_COOKIE,
        _fernet(request).encrypt(json.dumps(payload).encode()).decode(),
        max_age=SESSION_SECONDS,
        path=CONSOLE_PATH,
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
    )


def end_session(response: Response) -> None:
    response.delete_cookie(CONSOLE_COOKIE, path=CONSOLE_PATH)


def console_session(request: Request) -> ConsoleSession:
    """The signed-in session of this request, or SignInNeeded."""
    expected_admin = _fingerprint(_admin_token(request))
    cookie = request.cookies.get(CONSOLE_COOKIE, "")
    if not cookie or len(cookie) > 4096:
        raise SignInNeeded()
    try:
        payload = json.loads(_fernet(request).decrypt(cookie.encode(), ttl=SESSION_SECONDS))
    except (InvalidToken, ValueError):
        raise SignInNeeded() from None
    if not isinstance(payload, dict) or not hmac.compare_digest(
        str(payload.get("admin", "")), expected_admin
    ):
        raise SignInNeeded()
    return ConsoleSession(csrf=str(payload.get("csrf", "")))


def checked_form(
    session: Annotated[ConsoleSession, Depends(console_session)],
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> ConsoleSession:
    """The session of a form post whose csrf field matches it; a 403 otherwise."""
    if not csrf or not hmac.compare_digest(csrf, session.csrf):
        raise NotAllowed("This form has expired or did not come from the console; reload it.")
    return session


SessionDep = Annotated[ConsoleSession, Depends(console_session)]
FormDep = Annotated[ConsoleSession, Depends(checked_form)]
