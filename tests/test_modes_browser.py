"""The battle page's three modes in headless Chromium, at desktop and phone sizes, with the mouse
and from the keyboard: anonymous battle, side by side (named) and direct chat."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Battle, BattleMode, ChatFeedback, Feedback, Vote
from tests.browser import PHONE, BrowserPage
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, answer_for


def _models(arena: Arena, upstream: FakeUpstream) -> None:
    arena.add_model("alpha-7b", upstream.base_url, "slow:0.02", organization="Alpha Labs")
    arena.add_model("beta-13b", upstream.base_url, "slow:0.02", organization="Beta Inc")
    arena.add_model("gamma-2b", upstream.base_url, "slow:0.02", organization="Gamma")


def _no_errors(browser_page: BrowserPage) -> None:
    unexpected = [e for e in browser_page.console_errors if "409 (Conflict)" not in e]
    assert unexpected == [] and browser_page.page_errors == []


def _options(page: Page, select: str) -> list[str]:
    return page.locator(f"{select} option").evaluate_all("(os) => os.map((o) => o.value)")


@pytest.mark.browser
def test_side_by_side_names_stream_vote_and_link(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    _models(arena, fake_upstream)
    page = browser_page.page
    page.goto(arena.url + "/")
    expect(page.locator("#named-pick")).to_be_hidden()
    page.get_by_role("tab", name="Side by side").click()
    expect(page).to_have_url(arena.url + "/?mode=named")
    expect(page.get_by_role("tab", name="Side by side")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#named-pick")).to_be_visible()
    expect(page.locator("#named-a option")).to_have_count(4)
    assert _options(page, "#named-a") == ["", "alpha-7b", "beta-13b", "gamma-2b"]

    # The same model twice is refused before anything is sent.
    page.select_option("#named-a", "beta-13b")
    page.select_option("#named-b", "beta-13b")
    page.fill("#prompt", "Name a prime number")
    page.press("#prompt", "Control+Enter")
    expect(page.locator("#notice")).to_contain_text("two different models")

    page.select_option("#named-b", "alpha-7b")
    page.press("#prompt", "Control+Enter")
    # The names are there from the start, side A the first chosen, each a link to its page.
    expect(page.locator("#side-a .reveal-name")).to_have_text("beta-13b")
    expect(page.locator("#side-b .reveal-name")).to_have_text("alpha-7b")
    expect(page.locator("#named-a")).to_be_disabled()
    for side in ("a", "b"):
        expect(page.locator(f"#side-{side} .answer")).to_have_text(
            answer_for("Name a prime number")
        )
    expect(page.locator("#side-a .reveal-name a")).to_have_attribute("href", "/models/beta-13b")

    # A reload keeps the battle under its tab, names and all.
    page.goto(arena.url + "/")
    expect(page.get_by_role("tab", name="Side by side")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#side-b .reveal-name")).to_have_text("alpha-7b")
    page.get_by_role("button", name="B is better").click()
    expect(page.locator("#status")).to_contain_text("apart from the anonymous ratings")
    expect(page.locator("#side-b .verdict")).to_have_text("Your pick")
    browser_page.screenshot("named.png")
    page.locator("#side-a .reveal-name a").click()
    expect(page).to_have_url(arena.url + "/models/beta-13b")
    _no_errors(browser_page)

    async def stored(session: AsyncSession) -> list[tuple[BattleMode, bool]]:
        rows = await session.execute(
            select(Battle.mode, Vote.counted).join(Vote, Vote.battle_id == Battle.id)
        )
        return [(mode, counted) for mode, counted in rows]

    assert arena.db(stored) == [(BattleMode.named, False)]


@pytest.mark.browser
def test_side_by_side_on_a_phone_from_the_keyboard(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    _models(arena, fake_upstream)
    page = browser_page.page
    page.set_viewport_size(PHONE)
    page.goto(arena.url + "/")
    # The arrow keys move along the tabs and open them.
    page.get_by_role("tab", name="Battle").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Side by side")).to_be_focused()
    expect(page.locator("#named-pick")).to_be_visible()
    expect(page.locator("#named-a option")).to_have_count(4)
    page.keyboard.press("Tab")
    expect(page.locator("#named-a")).to_be_focused()
    page.keyboard.press("ArrowDown")  # the first model; model B is left to be drawn
    expect(page.locator("#named-a")).to_have_value("alpha-7b")
    page.locator("#prompt").focus()
    page.keyboard.type("Which is the largest ocean?")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#side-a .reveal-name")).to_have_text("alpha-7b")
    expect(page.locator("#side-b .reveal-name")).to_have_text(re.compile("beta-13b|gamma-2b"))
    expect(page.get_by_role("button", name="Tie", exact=True)).to_be_enabled()
    a_box = page.locator("#side-a").bounding_box()
    b_box = page.locator("#side-b").bounding_box()
    pick = page.locator("#named-pick").bounding_box()
    assert a_box is not None and b_box is not None and pick is not None
    assert b_box["y"] >= a_box["y"] + a_box["height"]
    assert max(b_box["x"] + b_box["width"], pick["x"] + pick["width"]) <= PHONE["width"]
    page.get_by_role("button", name="Tie", exact=True).focus()
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("apart from the anonymous ratings")
    browser_page.screenshot("named-phone.png")
    _no_errors(browser_page)


@pytest.mark.browser
def test_direct_chat_turns_thumbs_and_reload(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    _models(arena, fake_upstream)
    page = browser_page.page
    page.goto(arena.url + "/?mode=chat")
    expect(page.locator("#battle")).to_be_hidden()
    expect(page.locator("#chat")).to_be_visible()
    expect(page.locator("#chat-model option")).to_have_count(4)
    page.fill("#chat-prompt", "Hello there")
    page.click("#chat-send")
    expect(page.locator("#chat-notice")).to_have_text("Choose a model first.")

    page.select_option("#chat-model", "gamma-2b")
    page.click("#chat-send")
    expect(page.locator("#chat-model-name")).to_have_text("gamma-2b")
    expect(page.locator("#chat-thread .answer")).to_have_text(answer_for("Hello there"))
    page.get_by_role("button", name="Good answer").click()
    expect(page.get_by_role("button", name="Good answer")).to_have_attribute("aria-pressed", "true")
    page.fill("#chat-prompt", "Tell me more")
    page.press("#chat-prompt", "Control+Enter")
    expect(page.locator("#chat-thread .answer")).to_have_text(
        [answer_for("Hello there"), answer_for("Tell me more")]
    )
    page.get_by_role("button", name="Bad answer").nth(1).click()
    expect(page.get_by_role("button", name="Bad answer").nth(1)).to_have_attribute(
        "aria-pressed", "true"
    )

    # A reload keeps the chat, its answers and the thumbs given.
    page.reload()
    expect(page.locator("#chat-thread .asked-text")).to_have_text(["Hello there", "Tell me more"])
    expect(page.get_by_role("button", name="Good answer").first).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator("#chat-model-name a")).to_have_attribute("href", "/models/gamma-2b")
    browser_page.screenshot("chat.png")
    page.get_by_role("button", name="New chat").click()
    expect(page.locator("#chat-thread .turn")).to_have_count(0)
    expect(page.locator("#chat-model")).to_be_focused()
    _no_errors(browser_page)

    async def thumbs(session: AsyncSession) -> list[tuple[int, Feedback]]:
        rows = await session.execute(
            select(ChatFeedback.turn, ChatFeedback.rating).order_by(ChatFeedback.turn)
        )
        return [(turn, rating) for turn, rating in rows]

    assert arena.db(thumbs) == [(1, Feedback.up), (2, Feedback.down)]


@pytest.mark.browser
def test_direct_chat_regenerates_its_latest_answer_on_a_phone(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    arena.add_model("delta-3b", fake_upstream.base_url, "counting:0.02")
    page = browser_page.page
    page.set_viewport_size(PHONE)
    page.goto(arena.url + "/?mode=chat")
    expect(page.locator("#chat-model option")).to_have_count(2)
    page.select_option("#chat-model", "delta-3b")
    page.fill("#chat-prompt", "Name a river")
    page.press("#chat-prompt", "Control+Enter")
    answer = page.locator("#chat-thread .answer")
    expect(answer).to_have_text(re.compile(r"^Answer number \d+ to: Name a river\."))
    regenerate = page.get_by_role("button", name="Regenerate")
    expect(regenerate).to_be_visible()
    first = answer.inner_text()
    page.get_by_role("button", name="Good answer").click()
    expect(page.get_by_role("button", name="Good answer")).to_have_attribute("aria-pressed", "true")
    box = regenerate.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]

    # From the keyboard: the new answer streams in place of the old, its thumbs cleared.
    regenerate.focus()
    page.keyboard.press("Enter")
    expect(answer).to_have_count(1)
    expect(answer).not_to_have_text(first)
    expect(answer).to_have_text(re.compile(r"^Answer number \d+ to: Name a river\."))
    expect(regenerate).to_be_visible()
    expect(page.get_by_role("button", name="Good answer")).to_have_attribute(
        "aria-pressed", "false"
    )
    expect(page.locator("#chat-thread .asked-text")).to_have_text(["Name a river"])
    browser_page.screenshot("chat-regenerated-phone.png")

    # A reload shows the new answer only.
    second = answer.inner_text()
    page.reload()
    expect(answer).to_have_text(second)
    expect(regenerate).to_be_visible()
    _no_errors(browser_page)

    async def thumbs(session: AsyncSession) -> int:
        return len((await session.execute(select(ChatFeedback.id))).all())

    assert arena.db(thumbs) == 0


@pytest.mark.browser
def test_direct_chat_on_a_phone_from_the_keyboard(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    _models(arena, fake_upstream)
    page = browser_page.page
    page.set_viewport_size(PHONE)
    page.goto(arena.url + "/")
    page.get_by_role("tab", name="Battle").focus()
    page.keyboard.press("End")
    expect(page.get_by_role("tab", name="Direct chat")).to_be_focused()
    expect(page).to_have_url(arena.url + "/?mode=chat")
    expect(page.locator("#chat-model option")).to_have_count(4)
    page.keyboard.press("Tab")
    expect(page.locator("#chat-model")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#chat-model")).to_have_value("alpha-7b")
    page.keyboard.press("Tab")
    expect(page.locator("#chat-prompt")).to_be_focused()
    page.keyboard.type("What is a haiku?")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#chat-thread .answer")).to_have_text(answer_for("What is a haiku?"))
    thumbs_up = page.get_by_role("button", name="Good answer")
    thumbs_up.focus()
    page.keyboard.press("Enter")
    expect(thumbs_up).to_have_attribute("aria-pressed", "true")
    for selector in ("#chat-side", "#chat-form"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    browser_page.screenshot("chat-phone.png")
    # Back to the battle tab: the battle page is as it was, the chat kept for later.
    page.get_by_role("tab", name="Direct chat").focus()
    page.keyboard.press("Home")
    expect(page.locator("#battle")).to_be_visible()
    expect(page.locator("#chat")).to_be_hidden()
    expect(page).to_have_url(arena.url + "/")
    _no_errors(browser_page)
