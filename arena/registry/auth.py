"""Who calls the owner and admin APIs: bearer tokens, kept as hashes, failures rate limited.

Only failures are limited: a valid token is checked first and always accepted, so that wrong
tokens sent from behind the operator's proxy (one address for everyone) cannot lock the operator
or an owner out. The limit then does not slow guessing (a right guess passes even from a limited
address): owner tokens (256 random bits) and invite codes (96) make guessing hopeless, and the
admin token must be as long; the limit turns away clients that keep sending wrong ones.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from typing import Annotated, Final, NoReturn

from fastapi import Depends, FastAPI, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.config import Settings
from arena.db import SessionDep
from arena.errors import ArenaError, NotAllowed, TooManyRequests, Unauthenticated
from arena.models import Owner

TOKEN_PREFIX: Final = "arena_"
_WINDOW_SECONDS: Final = 60.0
# Bounded memory whatever the number of addresses trying; the oldest idle ones are forgotten.
_MAX_TRACKED: Final = 50_000


def new_owner_token() -> str:
    # The prefix lets secret scanners recognise a leaked token.
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_invite_code() -> str:
    return secrets.token_urlsafe(12)


def hash_token(token: str) -> str:
    """SHA-256 is enough here: tokens are 256 random bits, so there is nothing to brute-force."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant time whatever the lengths and characters (digests are compared, not text)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest(),
        hashlib.sha256(expected.encode("utf-8", "surrogatepass")).digest(),
    )


class FailureWindow:
    """Events per key (a client address) in a sliding window, in this process's memory.

    With several workers each keeps its own window, so the effective limit is workers x limit."""

    def __init__(self, limit: int, window_seconds: float = _WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window_seconds
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def retry_after(self, key: str) -> int | None:
        """Seconds to wait when `key` used up its allowance, else None."""
        now = time.monotonic()
        events = self._recent(key, now)
        if events is None or len(events) < self.limit:
            return None
        return max(1, math.ceil(events[0] + self.window - now))

    def record(self, key: str) -> None:
        now = time.monotonic()
        events = self._recent(key, now) or deque()
        events.append(now)
        self._events[key] = events
        self._events.move_to_end(key)
        while len(self._events) > _MAX_TRACKED:
            self._events.popitem(last=False)


def _window(app: FastAPI, name: str, limit: int, window_seconds: float) -> FailureWindow:
    windows: dict[str, FailureWindow] = app.state.__dict__.setdefault("auth_windows", {})
    if name not in windows:
        windows[name] = FailureWindow(limit, window_seconds)
    return windows[name]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def failed_auth_window(request: Request) -> FailureWindow:
    settings: Settings = request.app.state.settings
    return _window(request.app, "auth", settings.auth_failures_per_minute, _WINDOW_SECONDS)


def signup_window(request: Request) -> FailureWindow:
    settings: Settings = request.app.state.settings
    return _window(request.app, "signup", settings.signups_per_hour, 3600.0)


def check_not_blocked(window: FailureWindow, key: str, what: str) -> None:
    wait = window.retry_after(key)
    if wait is not None:
        raise TooManyRequests(f"Too many {what} from your address; try again in {wait} s.", wait)


def refuse_sign_in(window: FailureWindow, address: str, error: ArenaError) -> NoReturn:
    """A failed sign-in: 429 once the address has used up its failures, else counted, `error`."""
    check_not_blocked(window, address, "failed sign-ins")
    window.record(address)
    raise error


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def owner_by_token(session: AsyncSession, token: str) -> Owner | None:
    digest = hash_token(token)
    owner = await session.scalar(select(Owner).where(Owner.token_hash == digest))
    # The lookup is by hash, so timing reveals nothing about the token; compare anyway, in
    # constant time, rather than trust a database collation.
    if owner is None or not hmac.compare_digest(owner.token_hash, digest):
        return None
    return owner


async def current_owner(request: Request, session: SessionDep) -> Owner:
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated(
            "Send your owner token in the header 'Authorization: Bearer TOKEN'; "
            "POST /api/owners creates an owner account and its token."
        )
    owner = await owner_by_token(session, token)
    if owner is not None and owner.revoked_at is None:
        return owner
    if owner is None:
        why = (
            "This owner token is not valid. Check that it was copied whole; a lost token "
            "cannot be recovered, but the operator can issue a new one."
        )
    else:
        why = "This owner token was revoked by the operator; ask the operator for a new one."
    refuse_sign_in(failed_auth_window(request), client_address(request), Unauthenticated(why))


def require_admin(request: Request) -> None:
    settings: Settings = request.app.state.settings
    expected = settings.resolved_admin_token()
    if not expected:
        raise NotAllowed("The admin API is off: the operator must set ARENA_ADMIN_TOKEN.")
    token = bearer_token(request)
    if token is not None and same_secret(token, expected):
        return
    refuse_sign_in(
        failed_auth_window(request),
        client_address(request),
        Unauthenticated("Send the admin token (ARENA_ADMIN_TOKEN) as 'Authorization: Bearer'."),
    )


OwnerDep = Annotated[Owner, Depends(current_owner)]
AdminDep = Annotated[None, Depends(require_admin)]
