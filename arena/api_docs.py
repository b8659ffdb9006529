"""The interactive API docs, /docs (Swagger UI) and /redoc, with their scripts served from here."""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser
from importlib.metadata import version
from importlib.resources import files
from os import stat_result
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

# Swagger UI's and ReDoc's bundles as the fastapi-offline package ships them, so the docs work
# on a machine without internet. The package's version is in the URL: a new release is a new
# address, which is what lets the browser keep a file for a year without asking again.
ASSETS_PACKAGE = "fastapi_offline"
ASSETS_URL = f"/docs/assets/{version('fastapi-offline')}"
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"

router = APIRouter(include_in_schema=False)


def assets_dir() -> Path:
    return Path(str(files(ASSETS_PACKAGE) / "static"))


class _LongLivedFiles(StaticFiles):
    def file_response(
        self, full_path: PathLike, stat_result: stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = ASSET_CACHE_CONTROL
        return response


class _InlineScripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.scripts: list[str] = []
        self._inside: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script" and not any(name == "src" for name, _ in attrs):
            self._inside = []

    def handle_data(self, data: str) -> None:
        if self._inside is not None:
            self._inside.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._inside is not None:
            self.scripts.append("".join(self._inside))
            self._inside = None


def docs_policy(html: str) -> str:
    """The content policy of a docs page: only this host, and the page's own inline script
    allowed by its hash (FastAPI writes Swagger UI's setup inline, ReDoc's none).

    ReDoc styles itself by adding <style> elements, hence the inline styles; nothing on these
    pages comes from a visitor or a model."""
    parser = _InlineScripts()
    parser.feed(html)
    parser.close()
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in parser.scripts
    ]
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *hashes]),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = docs_policy(bytes(page.body).decode())
    return page


def _urls(request: Request) -> tuple[str, str]:
    # Behind a proxy that mounts the arena under a prefix, the links must carry the prefix.
    root = request.scope.get("root_path", "").rstrip("/")
    return f"{root}{request.app.openapi_url}", f"{root}{ASSETS_URL}"


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    openapi_url, assets = _urls(request)
    return _with_policy(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{request.app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
        )
    )


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    openapi_url, assets = _urls(request)
    return _with_policy(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{request.app.title} - ReDoc",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png",
            with_google_fonts=False,
        )
    )


def install_api_docs(app: FastAPI) -> None:
    """For an app made with docs_url=None and redoc_url=None (FastAPI's own pages load from a
    CDN)."""
    app.include_router(router)
    app.mount(ASSETS_URL, _LongLivedFiles(directory=assets_dir()), name="docs-assets")
