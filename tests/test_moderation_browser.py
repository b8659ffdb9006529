"""Moderation as the visitor sees it in headless Chromium: a refused prompt's message, and
answers withheld after they streamed (a battle's, a chat's), taken off the page and kept off
after a reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from arena.chats.service import CHAT_WITHHELD
from arena.moderation import WITHHELD_MESSAGE
from tests.browser import BrowserPage
from tests.fake_upstream import FakeUpstream, answer_for
from tests.registry.accounts import owner_with_model


def _send(page: Any, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.press("#prompt", "Control+Enter")


@pytest.mark.browser
def test_refused_prompts_and_withheld_answers_on_the_battle_page(
    arena_factory: Any, fake_upstream: FakeUpstream, browser_page: BrowserPage, tmp_path: Path
) -> None:
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("zorblax\n")
    arena = arena_factory(
        moderation_url=f"{fake_upstream.base_url}/moderations",
        moderation_blocklist_file=blocklist,
    )
    arena.add_model("alpha-7b", fake_upstream.base_url, "says:Here goes FLAG-violence now")
    arena.add_model("beta-13b", fake_upstream.base_url, "says:A calm answer")
    page = browser_page.page
    page.goto(arena.url + "/")

    _send(page, "tell me about zorblax")
    expect(page.get_by_role("alert")).to_contain_text("word or phrase this arena does not accept")
    expect(page.locator("#prompt")).to_have_value("tell me about zorblax")
    expect(page.locator("#sides")).to_be_hidden()

    _send(page, "Tell me a story")
    for side in ("a", "b"):
        expect(page.locator(f"#side-{side} .answer-error")).to_have_text(WITHHELD_MESSAGE)
    expect(page.locator("#status")).to_contain_text("cannot be voted on")
    for button in page.locator(".vote-button").all():
        expect(button).to_be_disabled()
    for text in ("FLAG-violence", "A calm answer", "alpha-7b", "beta-13b"):
        assert text not in page.locator("#sides").inner_text()

    page.reload()
    for side in ("a", "b"):
        expect(page.locator(f"#side-{side} .answer-error")).to_have_text(WITHHELD_MESSAGE)
    assert "FLAG-violence" not in page.content() and "A calm answer" not in page.content()
    assert browser_page.page_errors == []


@pytest.mark.browser
def test_a_withheld_chat_answer_on_the_chat_page_and_in_its_owners_stats(
    arena_factory: Any, fake_upstream: FakeUpstream, browser_page: BrowserPage, tmp_path: Path
) -> None:
    blocklist = tmp_path / "blocklist.txt"
    # The prompt "zorblax" passes (one word of the phrase); the answer echoing it does not.
    blocklist.write_text("asked zorblax\n")
    arena = arena_factory(moderation_blocklist_file=blocklist)
    token = owner_with_model(arena, fake_upstream.base_url, name="alpha-7b")
    page = browser_page.page
    page.goto(arena.url + "/?mode=chat")
    page.select_option("#chat-model", "alpha-7b")
    page.fill("#chat-prompt", "Hello")
    page.click("#chat-send")
    expect(page.locator("#chat-thread .answer")).to_have_text(answer_for("Hello"))
    page.fill("#chat-prompt", "zorblax")
    page.press("#chat-prompt", "Control+Enter")

    def withheld_on_the_page() -> None:
        second = page.locator("#chat-thread .answer").nth(1)
        expect(second.locator(".answer-error")).to_have_text(CHAT_WITHHELD)
        expect(page.locator("#chat-status")).to_contain_text("moderation withheld the answer")
        expect(page.locator("#chat-form")).to_be_hidden()
        expect(page.get_by_role("button", name="New chat")).to_be_visible()
        expect(page.locator("#chat-regenerate")).to_be_hidden()
        expect(page.locator("#chat-thread .turn").nth(1).locator(".thumbs")).to_be_hidden()
        assert answer_for("zorblax") not in page.locator("#chat-thread").inner_text()
        expect(page.locator("#chat-thread .answer").first).to_have_text(answer_for("Hello"))

    withheld_on_the_page()
    page.reload()
    withheld_on_the_page()
    assert answer_for("zorblax") not in page.content()

    # Its owner reads the counts on the owner page, never the chat itself.
    page.goto(arena.url + "/owner")
    page.fill("#signin-token", token)
    page.click("#signin-form button[type=submit]")
    page.locator('#models-table tr[data-model="alpha-7b"] button[data-action="stats"]').click()
    expect(page.locator("#stats-list")).to_contain_text(
        "0.0% (0 of 2 answers failed, 1 withheld by moderation)"
    )
    assert "zorblax" not in page.content() and "Hello" not in page.content()
    assert browser_page.page_errors == []
