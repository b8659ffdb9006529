"""The console in Chromium: sign in, approve a registration, pause with a reason, and read the
audit log, from the keyboard and the mouse, on a desktop and a phone."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser import PHONE, BrowserPage
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import ADMIN_TOKEN, register, sign_up


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop", "phone"])
def test_operator_approves_and_pauses_from_the_console(
    arena: Arena,
    fake_upstream: FakeUpstream,
    browser_page: BrowserPage,
    viewport: dict[str, int] | None,
) -> None:
    with arena.client() as client:
        token = sign_up(client)
        assert register(client, token, fake_upstream.base_url).status_code == 201
    page = browser_page.page
    if viewport:
        page.set_viewport_size(viewport)
    page.goto(arena.url + "/admin")
    expect(page).to_have_url(arena.url + "/admin/login")
    page.fill("#token", "wrong")
    page.keyboard.press("Enter")
    expect(page.locator(".console-error")).to_contain_text("not the admin token")
    page.fill("#token", ADMIN_TOKEN)
    page.keyboard.press("Enter")
    expect(page.locator("#console-title")).to_have_text("Operator console")
    assert ADMIN_TOKEN not in page.url

    pending = page.locator("#pending-1")
    expect(pending).to_contain_text("ada-7b")
    pending.get_by_role("button", name="Approve").click()
    expect(page.locator(".console-done")).to_contain_text("ada-7b approved")

    row = page.locator("tr[data-model='ada-7b']")
    expect(row.locator(".status")).to_contain_text("active")
    row.get_by_role("button", name="Pause").click()  # the reason is required: nothing is sent
    expect(page.locator(".console-done")).to_contain_text("approved")
    row.get_by_label("Reason for ada-7b", exact=True).fill("answers in Klingon")
    row.get_by_role("button", name="Pause").click()
    expect(page.locator(".console-done")).to_contain_text("ada-7b is now paused")
    expect(row.locator(".status")).to_contain_text("answers in Klingon")
    expect(page.locator("#audit")).to_contain_text("model.pause")
    expect(page.locator("#audit")).to_contain_text("answers in Klingon")
    browser_page.screenshot(f"console-{'phone' if viewport else 'desktop'}.png")
    assert not browser_page.page_errors
    # The one wrong sign-in was answered 401, which Chromium reports; nothing else went wrong.
    assert all("401" in error for error in browser_page.console_errors)
