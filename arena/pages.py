"""The visitor's battle page, and the security headers every page is served with."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arena.battles import shares
from arena.consent import ReleaseNotice, set_notice_cookie
from arena.models import utcnow
from arena.templating import templates
from arena.visitors import session_of, set_session_cookie, visitor_of

router = APIRouter(include_in_schema=False)

# Pages load only our own files: no inline script, no plug-ins, no framing. Model answers are
# rendered as DOM nodes by static/js/markdown.js; this policy is the second wall behind that.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds ALWAYS to every answer and the content policy to HTML ones that do not bring their
    own (the API docs, arena/api_docs.py, allow their inline setup script by its hash).

    Plain ASGI rather than BaseHTTPMiddleware, which would buffer the battle's event stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    headers.setdefault(name, value)
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: FastAPI) -> None:
    app.add_middleware(SecurityHeaders)


# The modes of the battle page, each a tab: `?mode=` opens one (anonymous by default).
PAGE_MODES = ("anonymous", "named", "chat")


@router.get("/", response_class=HTMLResponse)
async def battle_page(request: Request, mode: str = "anonymous") -> HTMLResponse:
    state = request.app.state
    settings = state.settings
    notice: ReleaseNotice | None = state.release_notice
    response = templates.TemplateResponse(
        request,
        "battle.html",
        {
            "max_prompt_chars": settings.max_prompt_chars,
            "nav": "battle",
            "notice": notice,
            # An unknown mode opens the home page as it always was, rather than an error page.
            "mode": mode if mode in PAGE_MODES else "anonymous",
            "max_images": settings.max_images_per_prompt,
            "max_image_bytes": settings.max_image_bytes,
        },
    )
    if notice is not None:
        # The page carries the notice: the session it is served to gets the server's record of
        # it, so that its battles may be released (consent.py). A new visitor gets a session here.
        session_id, new = session_of(request.cookies)
        if new:
            set_session_cookie(response, session_id, settings)
        client_host = request.client.host if request.client else None
        set_notice_cookie(
            response,
            secret=state.secret_key,
            visitor=visitor_of(state.secret_key, session_id, client_host),
            notice=notice,
            settings=settings,
            now=utcnow(),
        )
        # Per visitor: never kept by a shared cache.
        response.headers["Cache-Control"] = "private, no-store"
    return response


@router.get("/me/battles", response_class=HTMLResponse)
async def my_battles_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "my_battles.html", {"nav": "mine"})


@router.get("/shared/{slug}", response_class=HTMLResponse)
async def shared_battle_page(request: Request, slug: str) -> HTMLResponse:
    """A battle its visitor published; the answers are drawn from their text by markdown.js."""
    async with request.app.state.sessionmaker() as session:
        try:
            shared = await shares.shared_battle(session, slug=slug)
        except shares.SharedBattleNotFound as missing:
            return templates.TemplateResponse(
                request, "shared_missing.html", {"message": missing.message}, status_code=404
            )
    turns: dict[int, dict[str, str]] = {}
    for message in shared.messages:
        turns.setdefault(message.turn, {})[message.side] = message.content
    response = templates.TemplateResponse(
        request,
        "shared.html",
        {"shared": shared, "turns": [turns[n] for n in sorted(turns)]},
    )
    # Taken back at its visitor's word: no cache may keep serving it.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response
