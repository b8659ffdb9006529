"""/docs and /redoc on a machine without internet: everything they load comes from the arena."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Request as BrowserRequest
from playwright.sync_api import Route, expect

from arena.api_docs import ASSET_CACHE_CONTROL, docs_policy
from tests.browser import BrowserPage
from tests.conftest import Arena

RENDER_TIMEOUT_MS = 90_000  # a whole OpenAPI document to render
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@dataclass
class Offline:
    """What a page tried to fetch from hosts other than the arena's."""

    reached_the_network: list[str] = field(default_factory=list)
    asked_for: list[str] = field(default_factory=list)


def _cut_off_from_the_internet(browser_page: BrowserPage) -> Offline:
    """Aborts every request that leaves for a host other than the arena's, as on a machine
    without internet; also notes the ones the page's content policy stopped before they left."""
    offline = Offline()

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            offline.reached_the_network.append(route.request.url)
            route.abort("internetdisconnected")

    def note_request(request: BrowserRequest) -> None:
        if urlsplit(request.url).hostname not in (None, "127.0.0.1"):
            offline.asked_for.append(request.url)

    browser_page.page.context.route("**/*", only_loopback)
    browser_page.page.on("request", note_request)
    return offline


def _policy_violations(browser_page: BrowserPage) -> list[str]:
    return [e for e in browser_page.console_errors if "Content Security Policy" in e]


@pytest.mark.browser
def test_swagger_ui_lists_the_operations_offline(arena: Arena, browser_page: BrowserPage) -> None:
    offline = _cut_off_from_the_internet(browser_page)
    page = browser_page.page
    page.goto(arena.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        "arena", timeout=RENDER_TIMEOUT_MS
    )
    operations = page.locator(".opblock-summary-path")
    expect(operations.first).to_be_visible()
    paths = {operations.nth(i).get_attribute("data-path") for i in range(operations.count())}
    assert {"/api/battles", "/healthz"} <= paths, paths

    # Trying an operation from the page reaches the arena under the page's policy.
    health = page.locator(".opblock", has=page.locator('[data-path="/healthz"]'))
    health.locator(".opblock-summary").click()
    health.get_by_role("button", name="Try it out").click()
    health.get_by_role("button", name="Execute").click()
    expect(
        health.locator(".live-responses-table tr.response .response-col_status").first
    ).to_have_text("200")
    browser_page.screenshot("api-docs-swagger.png")

    assert offline == Offline()
    assert _policy_violations(browser_page) == []
    assert browser_page.page_errors == []


@pytest.mark.browser
def test_redoc_shows_the_title_and_sections_offline(
    arena: Arena, browser_page: BrowserPage
) -> None:
    offline = _cut_off_from_the_internet(browser_page)
    page = browser_page.page
    page.goto(arena.url + "/redoc")
    # Rendering the whole API in a 1 MB bundle takes seconds on a busy 2-core machine.
    expect(page.locator(".api-info h1")).to_contain_text("arena", timeout=RENDER_TIMEOUT_MS)
    expect(page.locator(".menu-content")).to_contain_text("battles")
    sections = page.locator("[data-section-id^='tag/']")
    expect(sections.first).to_be_attached()
    assert sections.count() >= 3
    # The search box runs in a worker, the part most likely to trip over the content policy.
    page.locator(".menu-content input[placeholder='Search...']").fill("battle")
    found = page.get_by_role("search").get_by_role("menuitem", name="Create Battle")
    expect(found).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    browser_page.screenshot("api-docs-redoc.png", full_page=False)

    assert offline.reached_the_network == []
    # ReDoc draws Redocly's logo from Redocly's CDN in its menu; the docs' policy (images from
    # this host only) stops that before it leaves the browser, and the link stays as text.
    assert offline.asked_for == [REDOCLY_LOGO]
    assert [v for v in _policy_violations(browser_page) if REDOCLY_LOGO not in v] == []
    expect(page.get_by_role("link", name="API docs by Redocly")).to_be_visible()
    assert browser_page.page_errors == []


def test_docs_pages_name_only_local_assets_which_are_cached_long(arena: Arena) -> None:
    with arena.client() as visitor:
        for path, assets in (
            ("/docs", ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")),
            ("/redoc", ("redoc.standalone.js", "favicon.png")),
        ):
            page = visitor.get(path)
            assert page.status_code == 200
            assert "cdn" not in page.text and "googleapis" not in page.text
            assert page.headers["content-security-policy"] == docs_policy(page.text)
            assert page.headers["x-content-type-options"] == "nosniff"
            linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert sorted(url.rsplit("/", 1)[-1] for url in linked) == sorted(assets)
            for url in linked:
                assert url.startswith("/docs/assets/"), url
                asset = visitor.get(url)
                assert asset.status_code == 200, url
                assert asset.headers["cache-control"] == ASSET_CACHE_CONTROL
                assert len(asset.content) > 1000
        assert visitor.get("/docs/assets/0/swagger-ui-bundle.js").status_code == 404


def test_the_docs_policy_allows_exactly_the_inline_script_of_the_page() -> None:
    policy = docs_policy("<p>x</p><script src='/a.js'></script><script>const a = 1;</script>")
    directives = dict(part.split(" ", 1) for part in policy.split("; "))
    # echo -n 'const a = 1;' | openssl dgst -sha256 -binary | base64
    assert directives["script-src"] == (
        "'self' 'sha256-zv0N0Hv6Zw9+C4JbNy52ozAX+zm+quOk2wp0IZa7md8='"
    )
    assert "unsafe" not in directives["script-src"]
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert docs_policy("<script src='/a.js'></script>").startswith(
        "default-src 'self'; script-src 'self'; "
    )
