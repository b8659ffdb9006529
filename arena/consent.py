"""The release notice: its text, and the server's signed record that the page carrying it was
served to a browser session.

Why a signed cookie rather than the client saying so (`notice_shown: true` in the request): the
fact is then the server's own. A battle is marked as shown the notice only if the battle page,
rendered with the notice as it reads now, was served to that very session earlier; a script
posting prompts, a page from before release was switched on, or a page with an older notice
text carries no valid record, and its battles are never released. The record is an HMAC under
the arena's secret key over the session, the notice's digest and the moment it was served, so it
cannot be made up or moved to another session; and it keeps the app stateless (no write per
page view)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from starlette.responses import Response

from arena.config import Settings
from arena.visitors import Visitor, salted_hash

NOTICE_COOKIE: Final = "arena_notice"
# Longest notice file accepted: a notice is read before a prompt, not a terms-of-service book.
MAX_NOTICE_CHARS: Final = 20_000
DEFAULT_NOTICE: Final = (
    "This arena publishes its conversations as open data: your prompts and both answers, with "
    "personal details removed as far as we can, together with your vote. Do not type anything "
    "you would not want to be public.\n\n"
    "You can delete any of your battles at any time under My battles; its texts are then erased "
    "and left out of every later release. Your vote stays counted, without any text."
)
# A record issued in the future by more than this is refused (clocks of several hosts differ).
_CLOCK_SKEW: Final = timedelta(minutes=5)
_MAX_COOKIE_CHARS: Final = 100


class NoticeUnreadable(ValueError):
    pass


@dataclass(frozen=True)
class ReleaseNotice:
    text: str

    @property
    def digest(self) -> str:
        """Names this wording: a record of an older text does not vouch for the current one."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:32]

    @property
    def paragraphs(self) -> list[str]:
        return [part.strip() for part in self.text.split("\n\n") if part.strip()]


def read_notice_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NoticeUnreadable(
            f"the release notice file {path} cannot be read as UTF-8 text ({exc}); "
            "fix the path or the file"
        ) from None
    if not text.strip():
        raise NoticeUnreadable(f"the release notice file {path} is empty; write the notice in it")
    if len(text) > MAX_NOTICE_CHARS:
        raise NoticeUnreadable(
            f"the release notice file {path} has {len(text)} characters, over the limit of "
            f"{MAX_NOTICE_CHARS}; shorten it"
        )
    return text


def release_notice(settings: Settings) -> ReleaseNotice | None:
    """The notice visitors are shown, or None when conversations are not released."""
    if not settings.release_conversations:
        return None
    if settings.release_notice_file is not None:
        return ReleaseNotice(read_notice_file(settings.release_notice_file).strip())
    return ReleaseNotice((settings.release_notice or DEFAULT_NOTICE).strip())


def _mac(secret: str, visitor: Visitor, notice: ReleaseNotice, issued: int) -> str:
    return salted_hash(secret, f"notice:{visitor.session_hash}:{notice.digest}:{issued}")


def set_notice_cookie(
    response: Response,
    *,
    secret: str,
    visitor: Visitor,
    notice: ReleaseNotice,
    settings: Settings,
    now: datetime,
) -> None:
    """Record on the response carrying the notice that this session was shown it, and when."""
    issued = int(now.timestamp())
    response.set_cookie(
        NOTICE_COOKIE,
        f"{issued}.{_mac(secret, visitor, notice, issued)}",
        max_age=settings.session_days * 86400,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def notice_shown_at(
    cookies: Mapping[str, str],
    *,
    secret: str,
    visitor: Visitor,
    notice: ReleaseNotice | None,
    now: datetime,
) -> datetime | None:
    """When this session was served the current notice, by the server's own record; None when
    release is off or there is no valid record."""
    if notice is None:
        return None
    record = cookies.get(NOTICE_COOKIE, "")
    if not record or len(record) > _MAX_COOKIE_CHARS:
        return None
    issued_text, _, mac = record.partition(".")
    if not issued_text.isdigit() or len(issued_text) > 12:
        return None
    issued = int(issued_text)
    if not secrets.compare_digest(mac, _mac(secret, visitor, notice, issued)):
        return None
    shown = datetime.fromtimestamp(issued, UTC)
    return shown if shown <= now + _CLOCK_SKEW else None
