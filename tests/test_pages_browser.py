"""The battle page in headless Chromium: the visitor's flow, hostile answers, failures, errors."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.turns import NEUTRAL_ERROR
from arena.models import Battle, utcnow
from tests.browser import PHONE, BrowserPage
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, answer_for

STATIC = Path(__file__).resolve().parent.parent / "static"

# Records every length each side's newest answer had while the page drew it, to tell a streamed
# answer from one that appeared all at once.
RECORD_GROWTH = """
window.__growth = {a: [], b: []};
new MutationObserver(() => {
  for (const side of ["a", "b"]) {
    const answers = document.querySelectorAll(`#side-${side} .answer`);
    const last = answers[answers.length - 1];
    const seen = window.__growth[side];
    const length = last ? last.textContent.length : 0;
    if (seen[seen.length - 1] !== length) seen.push(length);
  }
}).observe(document, {childList: true, subtree: true, characterData: true});
"""


def _no_identity_on_page(page: Page, *secrets: str) -> None:
    html = page.content()
    for secret in secrets:
        assert secret not in html, f"{secret!r} is on the page before the vote"


def _send(page: Page, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.press("#prompt", "Control+Enter")


def _vote_buttons_enabled(page: Page) -> None:
    for button in page.locator(".vote-button").all():
        expect(button).to_be_enabled()


@pytest.mark.browser
def test_battle_streams_follow_up_reload_vote_and_reveal(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url, "slow:0.05", organization="Alpha Labs")
    arena.add_model("beta-13b", fake_upstream.base_url, "slow:0.05", organization="Beta Inc")
    identity = ("alpha-7b", "beta-13b", "Alpha Labs", "Beta Inc", fake_upstream.base_url, "slow:")
    page = browser_page.page
    page.add_init_script(RECORD_GROWTH)
    page.goto(arena.url + "/")
    expect(page.locator(".vote-button")).to_have_count(4)
    expect(page.locator("#sides")).to_be_hidden()

    _send(page, "Name a prime number")
    for side in ("a", "b"):
        expect(page.locator(f"#side-{side} .asked-text")).to_have_text("Name a prime number")
    expect(page.locator(".vote-button").first).to_be_disabled()
    _vote_buttons_enabled(page)
    for side in ("a", "b"):
        expect(page.locator(f"#side-{side} .answer")).to_have_text(
            answer_for("Name a prime number")
        )
    growth = page.evaluate("window.__growth")
    for side in ("a", "b"):
        # Drawn word by word as the tokens came, not in one piece at the end.
        assert len([n for n in growth[side] if n > 0]) >= 5, growth
    _no_identity_on_page(page, *identity)

    _send(page, "And another one?")
    expect(page.locator("#side-a .answer").nth(1)).to_contain_text("You asked")
    # Leaving mid-stream loses nothing: the page picks the battle up again after a reload.
    page.reload()
    _vote_buttons_enabled(page)
    for side in ("a", "b"):
        expect(page.locator(f"#side-{side} .asked-text")).to_have_text(
            ["Name a prime number", "And another one?"]
        )
        expect(page.locator(f"#side-{side} .answer")).to_have_text(
            [answer_for("Name a prime number"), answer_for("And another one?")]
        )
    _no_identity_on_page(page, *identity)

    page.get_by_role("button", name="A is better").click()
    expect(page.locator("#side-a .reveal")).to_be_visible()
    expect(page.locator("#side-b .reveal")).to_be_visible()
    names = {page.inner_text(f"#side-{side} .reveal-name") for side in ("a", "b")}
    assert names == {"alpha-7b", "beta-13b"}
    for side in ("a", "b"):
        name = page.inner_text(f"#side-{side} .reveal-name")
        organization = "Alpha Labs" if name == "alpha-7b" else "Beta Inc"
        expect(page.locator(f"#side-{side} .reveal-org")).to_contain_text(organization)
    expect(page.locator("#side-a .verdict")).to_have_text("Your pick")
    expect(page.locator(".vote-button").first).to_be_disabled()
    expect(page.locator("#prompt-form")).to_be_hidden()
    expect(page.get_by_role("button", name="New battle")).to_be_focused()
    browser_page.screenshot("battle.png")

    # On a phone the two sides stack instead of sitting side by side.
    page.set_viewport_size(PHONE)
    a_box = page.locator("#side-a").bounding_box()
    b_box = page.locator("#side-b").bounding_box()
    assert a_box is not None and b_box is not None
    assert b_box["y"] >= a_box["y"] + a_box["height"]
    assert b_box["width"] <= PHONE["width"]
    browser_page.screenshot("battle-phone.png")
    # A reload mid-turn follows the running turn: no 409 to wait out.
    assert browser_page.console_errors == [] and browser_page.page_errors == []


@pytest.mark.browser
def test_a_battle_past_its_vote_window_is_shown_closed(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    """A visitor who comes back after the vote window votes, is told the battle is closed, and
    the page stays closed (no vote buttons, no follow-up box) instead of offering the vote again;
    a reload shows it closed too."""
    arena.add_model("alpha", fake_upstream.base_url, organization="A")
    arena.add_model("beta", fake_upstream.base_url, organization="B")
    page = browser_page.page
    page.goto(arena.url + "/")
    _send(page, "Still open?")
    _vote_buttons_enabled(page)

    async def two_hours_later(session: AsyncSession) -> None:
        await session.execute(update(Battle).values(created_at=utcnow() - timedelta(hours=2)))

    arena.db(two_hours_later)
    for visit in ("vote", "reload"):
        if visit == "vote":
            page.get_by_role("button", name="A is better").click()
            expect(page.locator("#notice")).to_contain_text("closed 1 hour after it started")
        else:
            page.reload()
        expect(page.locator("#status")).to_contain_text("This battle is closed")
        expect(page.locator(".vote-button").first).to_be_disabled()
        expect(page.locator("#prompt-form")).to_be_hidden()
        expect(page.get_by_role("button", name="New battle")).to_be_visible()
    unexpected = [e for e in browser_page.console_errors if "409 (Conflict)" not in e]
    assert unexpected == [] and browser_page.page_errors == []


@pytest.mark.browser
def test_hostile_answer_is_shown_as_text_and_nothing_runs(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    arena.add_model("attacker", fake_upstream.base_url, "xss", organization="X")
    arena.add_model("writer", fake_upstream.base_url, "markdown", organization="Y")
    page = browser_page.page
    page.goto(arena.url + "/")
    _send(page, "Say something")
    _vote_buttons_enabled(page)

    hostile = page.locator(".answer", has_text="Look:")
    expect(hostile).to_have_count(1)
    shown = hostile.inner_text()
    for literal in (
        "<img src=x onerror=\"window.__pwned='img'\">",
        "<script>window.__pwned='script'</script>",
        "[click](javascript:window.__pwned='link')",
        "<svg onload=\"window.__pwned='svg'\"></svg>",
    ):
        assert literal in shown
    answers = page.locator(".answer")
    assert (
        answers.locator("img, script, svg, iframe, object, embed, [onerror], [onload]").count() == 0
    )
    for link in answers.locator("a").all():
        assert (link.get_attribute("href") or "").startswith(("http://", "https://"))
    assert page.evaluate("window.__pwned") is None

    # The other side's Markdown is rendered, code block readable.
    written = page.locator(".answer", has_text="Title")
    expect(written.locator("h3")).to_have_text("Title")
    expect(written.locator("strong")).to_have_text("bold")
    expect(written.locator("p code")).to_have_text("inline code")
    expect(written.locator("li")).to_have_text(["one", "two"])
    expect(written.locator("pre code")).to_have_text("print('hi')")
    expect(written.locator(".md-code-lang")).to_have_text("python")

    page.get_by_role("button", name="Both are bad").click()
    expect(page.locator("#side-a .reveal")).to_be_visible()
    assert page.evaluate("window.__pwned") is None
    assert browser_page.console_errors == [] and browser_page.page_errors == []

    # The second wall: the page's content policy refuses inline script even if some got in.
    page.evaluate(
        """() => {
          const s = document.createElement("script");
          s.textContent = "window.__pwned = 'inline'";
          document.body.append(s);
        }"""
    )
    assert page.evaluate("window.__pwned") is None
    assert any("Content Security Policy" in text for text in browser_page.console_errors)


@pytest.mark.browser
def test_failed_side_shows_neutral_error_and_voting_stays_closed(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    arena.add_model("steady", fake_upstream.base_url, "normal", organization="S Org")
    arena.add_model("broken", fake_upstream.base_url, "error500", organization="B Org")
    page = browser_page.page
    page.goto(arena.url + "/")
    _send(page, "Hello there")

    expect(page.locator(".answer-error")).to_have_text(NEUTRAL_ERROR)
    expect(page.locator("#status")).to_contain_text("cannot be voted on")
    for button in page.locator(".vote-button").all():
        expect(button).to_be_disabled()
    expect(page.locator(".answer", has_text="You asked")).to_have_count(1)
    expect(page.locator("#prompt-form")).to_be_hidden()
    _no_identity_on_page(page, "steady", "broken", "S Org", "B Org", "error500")

    page.get_by_role("button", name="New battle").click()
    expect(page.locator("#sides")).to_be_hidden()
    expect(page.locator("#prompt")).to_be_visible()
    expect(page.locator("#prompt")).to_be_focused()
    expect(page.locator("#prompt")).to_have_value("")
    expect(page.locator("#send")).to_have_text("Send")
    assert browser_page.page_errors == []


@pytest.mark.browser
def test_api_errors_are_shown_to_the_visitor(arena: Arena, browser_page: BrowserPage) -> None:
    page = browser_page.page
    page.goto(arena.url + "/")
    _send(page, "   ")
    expect(page.get_by_role("alert")).to_contain_text("Type a prompt first")

    # No models registered: the API answers 503 and its detail reaches the visitor.
    _send(page, "Anyone there?")
    expect(page.get_by_role("alert")).to_contain_text("Fewer than two models are active")
    expect(page.locator("#prompt")).to_have_value("Anyone there?")
    expect(page.locator("#prompt")).to_be_enabled()
    expect(page.locator("#sides")).to_be_hidden()


# Markdown the renderer must get right, with the HTML it must build (hand-written).
LINK = 'rel="noopener noreferrer nofollow ugc" target="_blank"'
MARKDOWN_CASES = [
    ("plain text", "<p>plain text</p>"),
    ("one\ntwo\n\nthree", "<p>one<br>two</p><p>three</p>"),
    ("<img src=x onerror=alert(1)>", "<p>&lt;img src=x onerror=alert(1)&gt;</p>"),
    ("<b>bold?</b> & co", "<p>&lt;b&gt;bold?&lt;/b&gt; &amp; co</p>"),
    ("[a](javascript:alert(1))", "<p>[a](javascript:alert(1))</p>"),
    ("[a](data:text/html,x)", "<p>[a](data:text/html,x)</p>"),
    ("[a](/relative)", "<p>[a](/relative)</p>"),
    ("[docs](https://example.com/x)", f'<p><a href="https://example.com/x" {LINK}>docs</a></p>'),
    ("![cat](https://e.com/c.png)", f'<p><a href="https://e.com/c.png" {LINK}>cat</a></p>'),
    ("see https://e.com/a.", f'<p>see <a href="https://e.com/a" {LINK}>https://e.com/a</a>.</p>'),
    ("<https://e.com>", f'<p><a href="https://e.com/" {LINK}>https://e.com</a></p>'),
    (
        "**b** *i* _j_ ~~s~~ `c`",
        "<p><strong>b</strong> <em>i</em> <em>j</em> <del>s</del> <code>c</code></p>",
    ),
    ("snake_case_name and 2 * 3 * 4", "<p>snake_case_name and 2 * 3 * 4</p>"),
    ("***both***", "<p><strong><em>both</em></strong></p>"),
    ("`<script>`", "<p><code>&lt;script&gt;</code></p>"),
    ("\\*not em\\*", "<p>*not em*</p>"),
    (
        "# One\n## Two\n#### Four",
        '<h3 class="md-h1">One</h3><h4 class="md-h2">Two</h4><h6 class="md-h4">Four</h6>',
    ),
    ("- a\n- b", "<ul><li><p>a</p></li><li><p>b</p></li></ul>"),
    ("3. x\n4. y", '<ol start="3"><li><p>x</p></li><li><p>y</p></li></ol>'),
    ("- a\n  - b\n- c", "<ul><li><p>a</p><ul><li><p>b</p></li></ul></li><li><p>c</p></li></ul>"),
    ("> quoted\n> more", "<blockquote><p>quoted<br>more</p></blockquote>"),
    ("a\n\n---\n\nb", "<p>a</p><hr><p>b</p>"),
    (
        "```html\n<b>x</b>\n  indented\n```",
        '<div class="md-code"><div class="md-code-bar"><span class="md-code-lang">html</span>'
        '<button class="md-copy" type="button">Copy</button></div>'
        "<pre><code>&lt;b&gt;x&lt;/b&gt;\n  indented</code></pre></div>",
    ),
    (
        "```\nstill streaming",
        '<div class="md-code"><div class="md-code-bar"><span class="md-code-lang">code</span>'
        '<button class="md-copy" type="button">Copy</button></div>'
        "<pre><code>still streaming</code></pre></div>",
    ),
    (
        "| k | v |\n|---|--:|\n| a | **1** |",
        '<div class="md-table"><table><thead><tr><th>k</th><th class="md-right">v</th>'
        '</tr></thead><tbody><tr><td>a</td><td class="md-right"><strong>1</strong></td>'
        "</tr></tbody></table></div>",
    ),
]


def _serve_static_only(page: Page) -> None:
    """The renderer in a blank page of its own origin: no arena, no database needed."""

    def handle(route: Route) -> None:
        path = route.request.url.removeprefix("http://arena.test")
        if path == "/":
            route.fulfill(content_type="text/html", body="<!doctype html><title>md</title>")
        elif path.startswith("/static/"):
            route.fulfill(
                content_type="text/javascript", body=(STATIC / path[len("/static/") :]).read_text()
            )
        else:
            route.fulfill(status=404)

    page.route("http://arena.test/**", handle)
    page.goto("http://arena.test/")


@pytest.mark.browser
def test_markdown_renderer_builds_only_safe_nodes(browser_page: BrowserPage) -> None:
    page = browser_page.page
    _serve_static_only(page)
    sources = [source for source, _ in MARKDOWN_CASES]
    rendered: list[str] = page.evaluate(
        """async (sources) => {
          const { renderMarkdown } = await import("/static/js/markdown.js");
          return sources.map((source) => {
            const box = document.createElement("div");
            box.append(renderMarkdown(source));
            return box.innerHTML;
          });
        }""",
        sources,
    )
    wrong = [
        f"{json.dumps(source)}\n  got  {got}\n  want {want}"
        for (source, want), got in zip(MARKDOWN_CASES, rendered, strict=True)
        if got != want
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.browser
def test_markdown_renderer_survives_hostile_shapes(browser_page: BrowserPage) -> None:
    """Deep nesting and floods of unmatched delimiters: fast, and no stack overflow."""
    page = browser_page.page
    _serve_static_only(page)
    elapsed_ms: float = page.evaluate(
        """async () => {
          const { renderMarkdown } = await import("/static/js/markdown.js");
          const started = performance.now();
          for (const source of [
            ">".repeat(20000) + " deep",
            "- ".repeat(5000) + "x",
            "*a ".repeat(20000),
            "_a ".repeat(20000),
            "[a](".repeat(5000),
            "[".repeat(20000) + "](",
            "`".repeat(5000) + "x",
            "**".repeat(20000),
          ]) {
            document.body.append(renderMarkdown(source));
          }
          return performance.now() - started;
        }"""
    )
    assert elapsed_ms < 2000
    assert browser_page.page_errors == []
