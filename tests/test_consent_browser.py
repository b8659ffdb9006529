"""The release notice and My battles in headless Chromium: the notice before the first prompt,
the list of the visitor's battles, reopening one, and deleting one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Dialog, Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Battle, Message
from tests.browser import BrowserPage
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, answer_for

SECOND = "Second question: why is the sea salty?"
NAMES = ("alpha-7b", "beta-13b", "Alpha Labs", "Beta Inc")


def _send(page: Page, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.press("#prompt", "Control+Enter")


def _answered(page: Page) -> None:
    for button in page.locator(".vote-button").all():
        expect(button).to_be_enabled()


def _notice_shown_at(arena: Arena) -> list[bool]:
    async def work(session: AsyncSession) -> list[bool]:
        rows = await session.scalars(select(Battle.notice_shown_at).order_by(Battle.created_at))
        return [shown is not None for shown in rows]

    return arena.db(work)


@pytest.mark.browser
def test_release_notice_is_shown_before_the_first_prompt(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    arena = arena_factory(
        release_conversations=True,
        release_notice="Battles here are published.\n\nDelete yours under My battles.",
    )
    arena.add_model("alpha-7b", fake_upstream.base_url)
    arena.add_model("beta-13b", fake_upstream.base_url)
    page = browser_page.page
    page.goto(arena.url + "/")
    notice = page.locator("#release-notice")
    expect(notice).to_be_visible()
    expect(notice.locator("p")).to_have_text(
        [
            "Battles here are published.",
            "Delete yours under My battles.",
            "My battles lists yours, with a button to delete each.",
        ]
    )
    # Read before typing: the notice stands above the prompt box.
    notice_box, prompt_box = notice.bounding_box(), page.locator("#prompt").bounding_box()
    assert notice_box is not None and prompt_box is not None
    assert notice_box["y"] + notice_box["height"] <= prompt_box["y"]
    browser_page.screenshot("release-notice.png")

    _send(page, "Is this published?")
    _answered(page)
    expect(notice).to_be_hidden()
    assert _notice_shown_at(arena) == [True]
    assert browser_page.console_errors == [] and browser_page.page_errors == []


@pytest.mark.browser
def test_no_notice_without_release(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url)
    arena.add_model("beta-13b", fake_upstream.base_url)
    page = browser_page.page
    page.goto(arena.url + "/")
    expect(page.locator("#prompt")).to_be_visible()
    expect(page.locator("#release-notice")).to_have_count(0)
    _send(page, "Is this published?")
    _answered(page)
    assert _notice_shown_at(arena) == [False]


@pytest.mark.browser
def test_my_battles_lists_reopens_and_deletes(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url, organization="Alpha Labs")
    arena.add_model("beta-13b", fake_upstream.base_url, organization="Beta Inc")
    page = browser_page.page
    page.goto(arena.url + "/")
    _send(page, "First question: why do cats purr?")
    _answered(page)
    page.get_by_role("button", name="A is better").click()
    expect(page.locator("#side-a .reveal")).to_be_visible()
    page.get_by_role("button", name="New battle").click()
    _send(page, SECOND)
    _answered(page)

    page.get_by_role("link", name="My battles").click()
    entries = page.locator(".mine-entry")
    expect(entries).to_have_count(2)
    expect(entries.nth(0).locator(".mine-prompt")).to_have_text(SECOND)
    expect(entries.nth(0).locator(".mine-state")).to_have_text("Answered, not voted")
    expect(entries.nth(1).locator(".mine-prompt")).to_have_text("First question: why do cats purr?")
    expect(entries.nth(1).locator(".mine-state")).to_contain_text("Voted, you picked A")
    # Names for the voted battle only: the other is still open to a vote.
    assert "alpha-7b" in entries.nth(1).inner_text() and "beta-13b" in entries.nth(1).inner_text()
    for name in NAMES:
        assert name not in entries.nth(0).inner_text()
    browser_page.screenshot("my-battles.png")

    # Reopen the unvoted battle: its answers are back and it can still be voted on.
    entries.nth(0).get_by_role("link", name="Open").click()
    expect(page.locator("#side-a .asked-text")).to_have_text(
        "Second question: why is the sea salty?"
    )
    expect(page.locator("#side-b .answer")).to_have_text(
        answer_for("Second question: why is the sea salty?")
    )
    _answered(page)
    assert "?battle=" not in page.url

    page.goto(arena.url + "/me/battles")
    dialogs: list[str] = []

    def accept(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    entries.nth(0).get_by_role("button", name="Delete").click()
    expect(entries.nth(0).locator(".mine-prompt")).to_have_text("(erased)")
    expect(entries.nth(0).locator(".mine-state")).to_contain_text("Deleted")
    expect(entries.nth(0).get_by_role("button", name="Delete")).to_have_count(0)
    expect(page.locator("#mine-status")).to_contain_text("deleted")
    assert len(dialogs) == 1 and "erased for good" in dialogs[0]

    async def texts(session: AsyncSession) -> str:
        return "\n".join(await session.scalars(select(Message.content)))

    stored = arena.db(texts)
    assert (
        "sea salty" not in stored
        and answer_for("Second question: why is the sea salty?") not in stored
    )
    assert "cats purr" in stored

    # The erased battle's page says so and offers nothing to do with it but a new battle.
    entries.nth(0).get_by_role("link", name="Open").click()
    expect(page.locator("#status")).to_contain_text("You deleted this battle")
    expect(page.locator("#side-a .asked-text")).to_have_text("(erased)")
    expect(page.locator(".vote-button").first).to_be_disabled()
    expect(page.locator("#prompt-form")).to_be_hidden()
    expect(page.get_by_role("button", name="New battle")).to_be_visible()
    assert browser_page.console_errors == [] and browser_page.page_errors == []
