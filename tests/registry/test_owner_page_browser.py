"""The /owner page in headless Chromium: sign up, register, test, see stats; token kept safe."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import expect

from arena.upstream.demo import DEMO_MODELS, create_demo_app
from tests.browser import BrowserPage
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import ADMIN
from tests.servers import ServerThread

HOSTILE = "<img src=x onerror=\"window.__pwned='reason'\">"


@pytest.mark.browser
def test_owner_signs_up_registers_tests_and_reads_stats(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    page.goto(arena.url + "/owner")
    expect(page.locator("#signed-out")).to_be_visible()

    page.fill("#signup-name", "Ada")
    page.fill("#signup-email", "ada@example.org")
    page.click("#signup-form button[type=submit]")
    expect(page.locator("#signed-in")).to_be_visible()
    expect(page.locator("#owner-email")).to_have_text("ada@example.org")
    token = page.locator("#new-token-value").text_content() or ""
    assert token.startswith("arena_")

    # The token lives in this tab's sessionStorage only: no cookie, nothing that outlives the tab.
    assert page.evaluate("sessionStorage.getItem('arena.ownerToken')") == token
    assert token not in page.evaluate("document.cookie")
    assert page.evaluate("localStorage.length") == 0
    page.click("#new-token-done")
    expect(page.locator("#new-token")).to_be_hidden()

    # A probe failure lands next to the field at fault.
    form = page.locator("#register-form")
    page.fill("#reg-name", "ada-7b")
    page.fill("#reg-base_url", fake_upstream.base_url)
    page.fill("#reg-model", "error401")
    page.fill("#reg-api_key", "sk-browser-key-4321")
    page.click("#register-button")
    expect(form.locator('[data-error-for="api_key"]')).to_contain_text("refused the API key")
    expect(page.locator("#reg-api_key")).to_have_attribute("aria-invalid", "true")

    page.fill("#reg-max_tokens", "0")
    page.fill("#reg-model", "normal")
    page.click("#register-button")
    expect(form.locator('[data-error-for="max_tokens"]')).not_to_be_empty()

    page.fill("#reg-max_tokens", "256")
    page.click("#register-button")
    expect(page.locator("#register-result")).to_contain_text("Registered ada-7b: pending")
    row = page.locator('#models-table tr[data-model="ada-7b"]')
    expect(row).to_contain_text("pending")
    expect(row).to_contain_text("…4321")
    assert "sk-browser-key-4321" not in page.content()

    row.locator('button[data-action="test"]').click()
    expect(page.locator("#action-result")).to_contain_text("Test passed")

    with httpx.Client(base_url=arena.url) as admin:
        assert admin.post("/api/admin/models/ada-7b/approve", headers=ADMIN).status_code == 200
        paused = admin.post(
            "/api/admin/models/ada-7b/pause", json={"reason": HOSTILE}, headers=ADMIN
        )
        assert paused.status_code == 200

    # A reload keeps the tab signed in; what the operator wrote is shown as text, never run.
    page.reload()
    expect(page.locator("#signed-in")).to_be_visible()
    expect(row).to_contain_text("paused")
    expect(row).to_contain_text(HOSTILE)
    row.locator('button[data-action="resume"]').click()
    expect(page.locator("#action-result")).to_contain_text("only the operator can resume it")
    row.locator('button[data-action="stats"]').click()
    expect(page.locator("#stats")).to_be_visible()
    expect(page.locator("#stats-name")).to_have_text("ada-7b")
    expect(page.locator("#events-table tbody tr")).to_have_count(3)
    expect(page.locator("#stats-list")).to_contain_text("not rated yet")
    assert page.evaluate("window.__pwned") is None

    page.click("#signout")
    expect(page.locator("#signed-out")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('arena.ownerToken')") is None
    # Refused requests are logged by the browser; anything else (a CSP violation) is a fault.
    unexpected = [e for e in browser_page.console_errors if "Failed to load resource" not in e]
    assert unexpected == [] and browser_page.page_errors == []


@pytest.mark.browser
def test_invite_only_sign_up_and_bad_tokens_on_the_page(
    arena_factory: Callable[..., Arena], browser_page: BrowserPage
) -> None:
    arena = arena_factory(open_signup=False)
    page = browser_page.page
    page.goto(arena.url + "/owner")
    expect(page.locator("#signup-invite")).to_be_visible()
    page.fill("#signup-name", "Eve")
    page.fill("#signup-email", "eve@example.org")
    page.fill("#signup-invite", "made-up-code")
    page.click("#signup-form button[type=submit]")
    expect(page.locator('#signup-form [data-error-for="invite_code"]')).to_contain_text("not valid")

    page.fill("#signin-token", "arena_wrong")
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#owner-notice")).to_contain_text("not valid")
    expect(page.locator("#signed-in")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('arena.ownerToken')") is None
    assert browser_page.page_errors == []


@pytest.mark.browser
def test_owner_page_speaks_plainly_about_mistakes_and_states(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    """Form errors a person can act on, a wrong model id reported on the model id with the
    server's sentence (not its JSON), and a pause that says what the model now is."""
    demo = ServerThread(create_demo_app(seconds_per_word=0)).start()
    try:
        page = browser_page.page
        page.goto(arena.url + "/owner")
        signup = page.locator("#signup-form")
        page.fill("#signup-email", "ada@")
        page.click("#signup-form button[type=submit]")
        expect(signup.locator('[data-error-for="name"]')).to_have_text("must not be empty")
        expect(signup.locator('[data-error-for="email"]')).to_have_text(
            "is not an email address; write it like name@example.org"
        )
        page.fill("#signup-name", "Ada")
        page.fill("#signup-email", "ada@example.org")
        page.click("#signup-form button[type=submit]")
        expect(page.locator("#signed-in")).to_be_visible()
        page.click("#new-token-done")

        form = page.locator("#register-form")
        page.fill("#reg-name", "ada 7b")
        page.fill("#reg-base_url", demo.url + "/v1")
        page.click("#register-button")
        expect(form.locator('[data-error-for="name"]')).to_contain_text("no spaces or slashes")
        expect(form.locator('[data-error-for="model"]')).to_have_text("is required; fill it in")

        # The demo server answers a model id it does not serve as OpenAI does: 404 and a JSON
        # error object with code model_not_found.
        page.fill("#reg-name", "ada-7b")
        page.fill("#reg-model", "ada-7b")
        page.click("#register-button")
        model_error = form.locator('[data-error-for="model"]')
        expect(model_error).to_contain_text("does not serve the model id 'ada-7b'")
        expect(model_error).to_contain_text("The model 'ada-7b' does not exist on the demo server")
        expect(form.locator('[data-error-for="base_url"]')).to_be_empty()
        assert "{" not in (model_error.text_content() or "")
        expect(page.locator("#reg-model")).to_have_attribute("aria-invalid", "true")

        page.fill("#reg-model", DEMO_MODELS[0].name)
        page.click("#register-button")
        expect(page.locator("#register-result")).to_contain_text("Registered ada-7b: pending")
        with httpx.Client(base_url=arena.url) as admin:
            approved = admin.post("/api/admin/models/ada-7b/approve", headers=ADMIN)
            assert approved.status_code == 200
        page.reload()
        row = page.locator('#models-table tr[data-model="ada-7b"]')
        expect(row).to_contain_text("active")

        row.locator('button[data-action="pause"]').click()
        expect(page.locator("#action-result")).to_have_text("ada-7b is now paused.")
        expect(row.locator(".status")).to_have_text("paused")
        row.locator('button[data-action="resume"]').click()
        expect(page.locator("#action-result")).to_contain_text("ada-7b is now active.")
        expect(row.locator(".status")).to_have_text("active")
    finally:
        demo.stop()
    unexpected = [e for e in browser_page.console_errors if "Failed to load resource" not in e]
    assert unexpected == [] and browser_page.page_errors == []


@pytest.mark.browser
def test_owner_sets_and_removes_a_webhook_on_the_page(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    page.goto(arena.url + "/owner")
    page.fill("#signup-name", "Ada")
    page.fill("#signup-email", "ada@example.org")
    page.click("#signup-form button[type=submit]")
    page.click("#new-token-done")
    expect(page.locator("#webhook-url")).to_have_text("none")

    page.fill("#webhook-input", "http://169.254.169.254/latest")
    page.click("#webhook-set")
    expect(page.locator("#webhook-error")).to_contain_text("webhook_url: ")
    expect(page.locator("#webhook-url")).to_have_text("none")

    hook = f"{fake_upstream.base_url}/hooks"  # loopback: the test arena allows private URLs
    page.fill("#webhook-input", hook)
    page.click("#webhook-set")
    expect(page.locator("#webhook-result")).to_contain_text("shown this once: whsec_")
    expect(page.locator("#webhook-url")).to_have_text(hook)
    page.reload()  # the secret is not shown again
    expect(page.locator("#webhook-url")).to_have_text(hook)
    assert "whsec_" not in page.content()

    page.click("#webhook-remove")
    expect(page.locator("#webhook-result")).to_have_text("The webhook is removed.")
    expect(page.locator("#webhook-url")).to_have_text("none")
    assert not browser_page.page_errors
