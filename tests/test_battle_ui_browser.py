"""The battle page's second round of fixes in headless Chromium, at desktop and phone sizes:
a reload mid-answer, the keyboard path to the vote, the vote within reach on a phone,
regenerate, share, a lone number as an answer, and the personal leaderboard on My battles."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal

import pytest
from playwright.sync_api import Page, expect

from tests.browser import DESKTOP, PHONE, BrowserPage
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, answer_for

VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}

# Every text the notice line showed, to tell a quiet reload from one that alarmed the visitor.
RECORD_NOTICES = """
window.__notices = [];
document.addEventListener("DOMContentLoaded", () => {
  const notice = document.getElementById("notice");
  new MutationObserver(() => {
    if (!notice.hidden && notice.textContent) window.__notices.push(notice.textContent);
  }).observe(notice, {childList: true, subtree: true, characterData: true, attributes: true});
});
"""


def _send(page: Page, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.press("#prompt", "Control+Enter")


def _answers(page: Page) -> dict[str, str]:
    return {side: page.inner_text(f"#side-{side} .answer >> nth=-1") for side in ("a", "b")}


@pytest.mark.browser
@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_a_reload_mid_answer_picks_the_stream_up_quietly_within_a_second(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage, size: str
) -> None:
    arena.add_model("alpha", fake_upstream.base_url, "slow:0.12")
    arena.add_model("beta", fake_upstream.base_url, "slow:0.12")
    prompt = "Describe a river in a few words"
    page = browser_page.page
    page.set_viewport_size(VIEWPORTS[size])
    page.add_init_script(RECORD_NOTICES)
    page.goto(arena.url + "/")
    _send(page, prompt)
    expect(page.locator("#side-a .answer")).to_contain_text("asked:")
    page.reload()
    # Within a second of the reload the text so far is back, without a word of alarm.
    expect(page.locator("#side-a .answer")).to_contain_text("asked:", timeout=1000)
    expect(page.locator("#side-b .answer")).to_contain_text("asked:", timeout=1000)
    assert page.evaluate("document.querySelector('[data-state]').dataset.state") == "streaming"
    for side in ("a", "b"):
        expect(page.locator(f"#side-{side} .answer")).to_have_text(answer_for(prompt))
    expect(page.locator(".vote-button").first).to_be_enabled()
    assert page.evaluate("window.__notices") == []
    assert browser_page.console_errors == [] and browser_page.page_errors == []


@pytest.mark.browser
def test_the_vote_is_one_key_away_once_the_answers_are_in(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    arena.add_model("alpha", fake_upstream.base_url, organization="A")
    arena.add_model("beta", fake_upstream.base_url, organization="B")
    page = browser_page.page
    page.goto(arena.url + "/")
    _send(page, "Keyboard first")
    first = page.get_by_role("button", name="A is better")
    expect(first).to_be_enabled()
    expect(first).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="B is better")).to_be_focused()
    # Typing a follow-up is typing: the digits go into the box, not into a vote.
    page.click("#prompt")
    page.keyboard.type("3")
    expect(page.locator("#prompt")).to_have_value("3")
    expect(page.locator("#side-a .reveal")).to_be_hidden()
    # Elsewhere, 2 votes for B.
    page.get_by_role("button", name="B is better").focus()
    page.keyboard.press("2")
    expect(page.locator("#side-b .verdict")).to_have_text("Your pick")
    expect(page.locator("#side-b .reveal")).to_be_visible()
    # Once voted, the keys do nothing more.
    page.keyboard.press("1")
    expect(page.locator("#side-a .verdict")).to_be_hidden()
    assert browser_page.console_errors == [] and browser_page.page_errors == []


@pytest.mark.browser
def test_on_a_phone_the_vote_stays_on_screen_beside_long_answers(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    arena.add_model("alpha", fake_upstream.base_url, "long:40")
    arena.add_model("beta", fake_upstream.base_url, "long:40")
    page = browser_page.page
    page.set_viewport_size(PHONE)
    page.goto(arena.url + "/")
    _send(page, "Tell me at length")
    expect(page.locator("#side-b .answer")).to_contain_text("Paragraph 40")
    button = page.get_by_role("button", name="Both are bad")
    expect(button).to_be_enabled()
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height > 3 * PHONE["height"], "the answers should run pages long for this test"
    for scrolled in (0, height // 3, height // 2, height):
        page.evaluate(f"window.scrollTo(0, {scrolled})")
        for name in ("A is better", "B is better", "Tie", "Both are bad"):
            box = page.get_by_role("button", name=name).bounding_box()
            assert box is not None
            assert 0 <= box["y"] and box["y"] + box["height"] <= PHONE["height"], (scrolled, box)
    # Reading the start of answer A, the vote does not hide it: the bar is short.
    bar = page.locator("#decide").bounding_box()
    assert bar is not None and bar["height"] < PHONE["height"] * 0.35
    page.evaluate(f"window.scrollTo(0, {height // 2})")
    button.click()
    expect(page.locator("#side-a .reveal")).to_be_visible()
    browser_page.screenshot("battle-phone-sticky-vote.png", full_page=False)
    assert browser_page.console_errors == [] and browser_page.page_errors == []


@pytest.mark.browser
@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_regenerate_then_vote_then_share_and_take_back(
    arena: Arena,
    fake_upstream: FakeUpstream,
    browser_page: BrowserPage,
    size: str,
) -> None:
    # A new answer each time a model is asked: the regenerated text differs from the first.
    arena.add_model("alpha-7b", fake_upstream.base_url, "counting:0.001", organization="Alpha Labs")
    arena.add_model("beta-13b", fake_upstream.base_url, "counting:0.002", organization="Beta Inc")
    page = browser_page.page
    page.set_viewport_size(VIEWPORTS[size])
    page.goto(arena.url + "/")
    _send(page, "Say something new")
    expect(page.locator(".vote-button").first).to_be_enabled()
    before = _answers(page)
    assert all("Answer number" in text for text in before.values())
    page.get_by_role("button", name="Ask both again").click()
    expect(page.locator(".vote-button").first).to_be_enabled()
    for side in ("a", "b"):
        expect(page.locator(f"#side-{side} .answer")).not_to_have_text(before[side])
        expect(page.locator(f"#side-{side} .answer")).to_contain_text("Answer number")
    after = _answers(page)
    assert page.locator(".turn").count() == 2, "one turn per side: asked again, not added"
    expect(page.get_by_role("button", name="A is better")).to_be_focused()
    for name in ("alpha-7b", "beta-13b", "Alpha Labs"):
        assert name not in page.content()
    page.keyboard.press("1")
    expect(page.locator("#side-a .verdict")).to_have_text("Your pick")
    # The vote is on the answers shown last: the battle keeps those, and counts the request.
    battle_id = page.evaluate("sessionStorage.getItem('arena.battle')")
    view = page.request.get(f"{arena.url}/api/battles/{battle_id}").json()
    assert view["regenerations"] == 1
    stored = {m["side"]: m["content"] for m in view["messages"] if m["side"] != "user"}
    assert stored == after

    expect(page.get_by_role("button", name="Ask both again")).to_be_hidden()
    page.get_by_role("button", name="Share this battle").click()
    link = page.locator("#shared-url")
    expect(link).to_be_visible()
    url = link.input_value()
    assert url.startswith(arena.url + "/shared/")
    browser_page.screenshot(f"battle-shared-{size}.png", full_page=False)

    # Anyone with the link (another browser, no cookie) reads it, names and all.
    reader_context = page.context.browser.new_context(viewport=VIEWPORTS[size])
    try:
        reader = reader_context.new_page()
        reader.goto(url)
        expect(reader.locator("#side-a .reveal-name")).to_have_text(
            view["models"]["model_a"]["name"]
        )
        expect(reader.locator("#side-b .reveal-name")).to_have_text(
            view["models"]["model_b"]["name"]
        )
        expect(reader.locator("#side-a .answer")).to_have_text(after["a"])
        expect(reader.locator(".asked-text").first).to_have_text("Say something new")
        expect(reader.locator("#shared-verdict")).to_have_text("A was better")

        # A reload keeps the link on the visitor's page; then they take it back.
        page.reload()
        expect(page.locator("#shared-url")).to_have_value(url)
        page.get_by_role("button", name="Stop sharing").click()
        expect(page.get_by_role("button", name="Share this battle")).to_be_visible()
        expect(page.locator("#shared-link")).to_be_hidden()
        gone = reader.goto(url)
        assert gone is not None and gone.status == 404
        expect(reader.locator("h1")).to_have_text("This battle is not published")
    finally:
        reader_context.close()
    assert browser_page.console_errors == [] and browser_page.page_errors == []


@pytest.mark.browser
def test_an_answer_that_is_a_number_is_shown_as_that_number_inside_its_card(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    arena.add_model("alpha", fake_upstream.base_url, "says:391.")
    arena.add_model("beta", fake_upstream.base_url, "says:391.")
    page = browser_page.page
    page.goto(arena.url + "/")
    _send(page, "What is 17 times 23?")
    # Measured once drawn for good: while streaming, each frame redraws the answer.
    expect(page.locator(".vote-button").first).to_be_enabled()
    for side in ("a", "b"):
        answer = page.locator(f"#side-{side} .answer")
        expect(answer).to_have_text("391.")
        assert answer.locator("ol").count() == 0
        text = answer.locator("p").first.bounding_box()
        card = answer.bounding_box()
        assert text is not None and card is not None
        assert card["x"] <= text["x"] and text["x"] + text["width"] <= card["x"] + card["width"]
    # A real list numbered from 391 keeps its numbers inside the card too.
    rendered = page.evaluate(
        """async () => {
          const { renderMarkdown } = await import("/static/js/markdown.js");
          const box = document.querySelector("#side-a .answer");
          const source = "391. first\\n392. second\\n\\nThen:\\n\\n1.\\n   indented item";
          box.replaceChildren(renderMarkdown(source));
          const lists = box.querySelectorAll("ol");
          const card = box.getBoundingClientRect();
          const first = lists[0];
          const range = document.createRange();
          range.selectNodeContents(first.querySelector("li"));
          const padding = parseFloat(getComputedStyle(first).paddingLeft);
          const digitWidth = (() => {
            const probe = document.createElement("span");
            probe.textContent = "391.";
            first.querySelector("li").append(probe);
            const width = probe.getBoundingClientRect().width;
            probe.remove();
            return width;
          })();
          return {
            lists: lists.length, start: first.start, items: first.children.length,
            padding, digitWidth, left: first.getBoundingClientRect().left - card.left,
          };
        }"""
    )
    assert rendered["lists"] == 2 and rendered["start"] == 391 and rendered["items"] == 2
    # Room for "391." and its gap inside the card, where the default padding had room for "39".
    assert rendered["padding"] > rendered["digitWidth"] and rendered["left"] >= 0
    assert browser_page.console_errors == [] and browser_page.page_errors == []


@pytest.mark.browser
@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_my_battles_shows_a_personal_leaderboard_from_20_counted_votes(
    arena_factory: Callable[..., Arena],
    fake_upstream: FakeUpstream,
    browser_page: BrowserPage,
    size: str,
) -> None:
    arena = arena_factory(battle_rate_limit="", vote_rate_limit="")
    for name in ("alpha", "beta", "gamma"):
        arena.add_model(name, fake_upstream.base_url)
    page = browser_page.page
    page.set_viewport_size(VIEWPORTS[size])
    page.goto(arena.url + "/me/battles")
    expect(page.locator("#my-board-status")).to_contain_text("20 more to go")
    expect(page.locator("#my-board-table")).to_be_hidden()

    def battle_and_vote(n: int, winner: str) -> None:
        created = page.request.post(
            f"{arena.url}/api/battles", data={"prompt": f"Personal question {n}?"}
        )
        assert created.status == 201, created.text()
        battle_id = created.json()["battle_id"]
        assert '"end"' in page.request.get(f"{arena.url}/api/battles/{battle_id}/stream").text()
        voted = page.request.post(
            f"{arena.url}/api/battles/{battle_id}/vote", data={"winner": winner}
        )
        assert voted.status == 200, voted.text()

    for n in range(19):
        battle_and_vote(n, "model_a")
    page.reload()
    expect(page.locator("#my-board-status")).to_contain_text("1 more to go")
    battle_and_vote(19, "model_a")
    page.reload()
    expect(page.locator("#my-board-table")).to_be_visible()
    expect(page.locator("#my-board-status")).to_have_text("From your 20 counted votes.")
    rows = page.locator("#my-board-rows tr")
    expect(rows).to_have_count(3)
    board = page.request.get(f"{arena.url}/api/me/leaderboard").json()
    for index, row in enumerate(board["models"]):
        expect(rows.nth(index).locator("th")).to_have_text(row["model"])
        # toFixed(0) rounds a half up, where Python's format rounds it to even.
        shown = Decimal(row["rating"]).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        expect(rows.nth(index).locator("td").nth(1)).to_have_text(str(shown))
    table = page.locator("#my-board-table").bounding_box()
    assert table is not None and table["x"] >= 0
    browser_page.screenshot(f"my-battles-board-{size}.png")
    # Below 20 counted votes the page does not ask for the board (its answer would be a 409),
    # so the console stays clean.
    assert browser_page.console_errors == []
    assert browser_page.page_errors == []
