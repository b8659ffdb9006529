"""Headless Chromium for the page tests: one browser per session, a fresh context for each test.

A pytest plugin (fixtures `chromium` and `browser_page`). Debian's /usr/bin/chromium, driven by
Playwright's sync API; `playwright install` is never needed. Without the browser the tests skip on
a developer's machine and fail under CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import require

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

CHROMIUM = Path("/usr/bin/chromium")
# How long an action or an expect() waits for the page. The tests check what a page does, not
# how fast: on a busy two-core machine running the suite four ways, Chromium can take many
# seconds to lay out a page (Playwright's own expect() default is 5 s).
PAGE_TIMEOUT_MS = 30_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class BrowserPage:
    """A page in a fresh browser context, with everything the page said on its console."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        """A screenshot under test-artifacts/ (gitignored), for a person to look at; of the
        whole page unless `full_page` is false (a very long page can take longer than a test)."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    require(
        CHROMIUM.exists(), f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"
    )
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        require(False, "browser tests need the playwright package (pip install -e '.[dev]')")
        raise
    from playwright.sync_api import expect

    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    driver = sync_playwright().start()
    try:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    except Error as exc:
        driver.stop()
        require(False, f"Playwright could not start {CHROMIUM}: {exc.message}")
        raise
    yield browser
    browser.close()
    driver.stop()


@pytest.fixture
def browser_page(chromium: Browser) -> Iterator[BrowserPage]:
    context = chromium.new_context(viewport=DESKTOP, color_scheme="light")
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    watched = BrowserPage(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.console_errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    yield watched
    context.close()
