"""The visitor's battle page, and the security headers every page is served with."""

from __future__ import annotations

from collections.abc import Collection

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arena.templating import templates

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
    """Adds ALWAYS to every answer and the content policy to HTML ones, except `exempt_paths`
    (FastAPI's interactive docs load their script from a CDN and inline it).

    Plain ASGI rather than BaseHTTPMiddleware, which would buffer the battle's event stream."""

    def __init__(self, app: ASGIApp, exempt_paths: Collection[str] = ()) -> None:
        self.app = app
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard_html = scope["path"] not in self.exempt_paths

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    headers.setdefault(name, value)
                if guard_html and headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: FastAPI) -> None:
    docs = [app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url]
    app.add_middleware(SecurityHeaders, exempt_paths=[path for path in docs if path])


@router.get("/", response_class=HTMLResponse)
async def battle_page(request: Request) -> HTMLResponse:
    settings = request.app.state.settings
    return templates.TemplateResponse(
        request,
        "battle.html",
        {"max_prompt_chars": settings.max_prompt_chars, "nav": "battle"},
    )
