"""The leaderboard and a model page in headless Chromium: plots render, categories switch,
nothing is fetched from outside the app, and a phone gets a page that fits."""

from __future__ import annotations

from playwright.sync_api import Request, expect

from tests.browser import PHONE, BrowserPage
from tests.conftest import Arena


def test_leaderboard_and_model_page_in_a_browser(
    rated_arena: Arena, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    requested: list[str] = []

    def record(request: Request) -> None:
        requested.append(request.url)

    page.on("request", record)
    page.goto(f"{rated_arena.url}/leaderboard")

    rows = page.locator("#leaderboard-table tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.first.locator("th")).to_have_text("alpha-large")
    for figure in ("plot-ratings", "plot-win-fraction", "plot-battle-count", "plot-sampling-share"):
        svg = page.locator(f"#{figure} svg")
        expect(svg).to_be_visible()
        box = svg.bounding_box()
        assert box is not None and box["width"] > 150 and box["height"] > 60, figure
    assert page.locator("#plot-ratings svg circle").count() == 4
    assert page.locator("#plot-win-fraction svg rect").count() == 16
    expect(page.locator("#snapshot-meta")).to_contain_text("Vote-set hash")
    browser_page.screenshot("leaderboard.png")

    page.get_by_role("navigation", name="Category").get_by_role("link", name="German").click()
    page.wait_for_url("**/leaderboard?category=language%3AGerman")
    expect(page.locator("#lb-caption")).to_contain_text("German")
    expect(page.locator("#plot-ratings svg")).to_be_visible()
    page.get_by_role("navigation", name="Method").get_by_role("link", name="Online Elo").click()
    page.wait_for_url("**method=elo**")
    expect(page.locator("#lb-caption")).to_contain_text("Online Elo")
    expect(page.locator("#leaderboard-table tbody tr").first).to_be_visible()
    method = page.get_by_role("navigation", name="Method")
    method.get_by_role("link", name="Style-controlled Bradley-Terry").click()
    page.wait_for_url("**method=bt-style**")
    expect(page.locator("#lb-caption")).to_contain_text("Style-controlled")
    style_rows = page.locator("#style-table tbody tr")
    expect(style_rows).to_have_count(4)
    expect(style_rows.first.locator("th")).to_have_text("Answer length (tokens)")
    expect(style_rows.first.locator("td").nth(2)).to_contain_text("×")
    assert page.locator("#plot-ratings svg circle").count() == 4
    browser_page.screenshot("leaderboard-style.png")

    page.get_by_role("link", name="beta-chat").first.click()
    page.wait_for_url("**/models/beta-chat**")
    expect(page.get_by_role("heading", level=1)).to_have_text("beta-chat")
    expect(page.locator("#opponents-table tbody tr")).to_have_count(3)
    expect(page.locator(".status-history li")).to_have_count(1)
    browser_page.screenshot("leaderboard-model.png")

    page.set_viewport_size(PHONE)
    page.goto(f"{rated_arena.url}/leaderboard")
    expect(rows.first).to_be_visible()
    # The page itself never scrolls sideways on a phone; wide tables and plots scroll in place.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    browser_page.screenshot("leaderboard-phone.png")
    page.goto(f"{rated_arena.url}/leaderboard?method=bt-style")
    expect(page.locator("#style-table")).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    page.goto(f"{rated_arena.url}/models/beta-chat")
    expect(page.locator("#opponents-table tbody tr").first).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    browser_page.screenshot("leaderboard-model-phone.png")

    outside = [url for url in requested if not url.startswith(rated_arena.url + "/")]
    assert outside == [] and all(url.startswith("http://127.0.0.1:") for url in requested)
    assert browser_page.console_errors == [] and browser_page.page_errors == []
