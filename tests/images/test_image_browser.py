"""Attaching images on the battle page in headless Chromium, on a desktop and on a phone: the
file picker, paste, thumbnails that can be removed from the keyboard, the image battle, and the
direct chat with a model that reads images."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser import PHONE, BrowserPage
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.images.pictures import picture

IDENTITY = ("seer-a", "seer-b", "Seer Labs", "Look Inc")


def _models(arena: Arena, upstream: FakeUpstream) -> None:
    arena.add_model(
        "seer-a", upstream.base_url, "vision", organization="Seer Labs", supports_images=True
    )
    arena.add_model(
        "seer-b", upstream.base_url, "vision", organization="Look Inc", supports_images=True
    )
    arena.add_model("blind-c", upstream.base_url, "text-only", organization="Text Co")


def _file(name: str, data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


# Pastes a PNG into the prompt box whose id is given (the battle's by default).
PASTE = """
([name, bytes, box]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
  const event = new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true,
                                             cancelable: true});
  document.getElementById(box || "prompt").dispatchEvent(event);
  return event.defaultPrevented;
}
"""


def _no_identity(page: Page) -> None:
    html = page.content()
    for secret in IDENTITY:
        assert secret not in html, f"{secret!r} is on the page before the vote"


@pytest.mark.browser
def test_attach_paste_remove_and_battle_with_images(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    _models(arena, fake_upstream)
    page = browser_page.page
    page.goto(arena.url + "/")
    attach = page.get_by_role("button", name="Attach images")
    expect(attach).to_be_visible()
    expect(page.locator("#attachments")).to_be_hidden()

    page.set_input_files("#images-input", files=[_file("blue.png", picture((40, 30)))])
    expect(page.locator("#attachments img")).to_have_count(1)
    expect(page.locator("#attachments img")).to_have_attribute("alt", "Attached image 1")
    # Pasted into the prompt box, a picture is attached rather than typed.
    assert page.evaluate(PASTE, ["pasted.png", list(picture((12, 12), (200, 30, 30)))])
    expect(page.locator("#attachments img")).to_have_count(2)
    # Not an image: refused here with a reason, nothing attached.
    page.set_input_files("#images-input", files=[_file("notes.txt", b"hello", "text/plain")])
    expect(page.locator("#notice")).to_contain_text("notes.txt is not a PNG, JPEG, WebP or GIF")
    expect(page.locator("#attachments img")).to_have_count(2)
    # Removed from the keyboard: focus the second one's button, press Enter.
    page.get_by_role("button", name="Remove image 2").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#attachments img")).to_have_count(1)
    expect(page.get_by_role("button", name="Remove image 1")).to_be_focused()
    assert page.evaluate(PASTE, ["again.png", list(picture((12, 12), (200, 30, 30)))])
    expect(page.locator("#attachments img")).to_have_count(2)

    page.fill("#prompt", "What do you see?")
    page.press("#prompt", "Control+Enter")
    for side in ("a", "b"):
        expect(page.locator(f"#side-{side} .asked-images img")).to_have_count(2)
        expect(page.locator(f"#side-{side} .answer")).to_have_text(
            "I see 2 picture(s): image/png 40x30, image/png 12x12."
        )
    expect(page.locator("#attachments")).to_be_hidden()
    # A follow-up carries no new images: the picker is gone until a new battle.
    expect(attach).to_be_hidden()
    _no_identity(page)
    page.get_by_role("button", name="A is better").click()
    expect(page.locator("#side-a .reveal")).to_be_visible()
    names = {page.inner_text(f"#side-{side} .reveal-name") for side in ("a", "b")}
    assert names == {"seer-a", "seer-b"}
    page.get_by_role("button", name="New battle").click()
    expect(attach).to_be_visible()
    expect(page.locator("#attachments img")).to_have_count(0)
    browser_page.screenshot("battle-images.png")
    assert browser_page.console_errors == [] and browser_page.page_errors == []


@pytest.mark.browser
def test_images_on_a_phone(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    _models(arena, fake_upstream)
    page = browser_page.page
    page.set_viewport_size(PHONE)
    page.goto(arena.url + "/")
    attach = page.get_by_role("button", name="Attach images")
    box = attach.bounding_box()
    assert box is not None and box["height"] >= 44 and box["x"] + box["width"] <= PHONE["width"]
    # The button opens the phone's picker (camera or gallery): the hidden file input.
    with page.expect_file_chooser() as chooser:
        attach.click()
    chooser.value.set_files([_file(f"p{n}.png", picture((30 + n, 20))) for n in range(4)])
    expect(page.locator("#attachments img")).to_have_count(4)
    expect(attach).to_be_disabled()  # the limit is reached
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    browser_page.screenshot("battle-images-attached-phone.png")
    remove = page.get_by_role("button", name="Remove image 4").bounding_box()
    assert remove is not None and remove["height"] >= 32
    page.fill("#prompt", "Describe them")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#side-a .answer")).to_contain_text("I see 4 picture(s)")
    expect(page.locator("#side-b .answer")).to_contain_text("I see 4 picture(s)")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    _no_identity(page)
    browser_page.screenshot("battle-images-phone.png")
    assert browser_page.console_errors == [] and browser_page.page_errors == []


@pytest.mark.browser
def test_a_refused_image_is_explained_and_can_be_removed(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    _models(arena, fake_upstream)
    page = browser_page.page
    page.goto(arena.url + "/")
    # Says it is a PNG, is a web page: the server decodes it and refuses it.
    html = b"<html><script>alert(1)</script></html>"
    page.set_input_files("#images-input", files=[_file("evil.png", html)])
    page.fill("#prompt", "Look")
    page.press("#prompt", "Control+Enter")
    expect(page.locator("#notice")).to_contain_text("images[0]: the file is not a PNG")
    expect(page.locator("#attachments img")).to_have_count(1)
    page.get_by_role("button", name="Remove image 1").click()
    page.press("#prompt", "Control+Enter")
    expect(page.locator("#status")).to_contain_text("Both answers are in")
    expect(page.locator("#side-a .asked-images")).to_have_count(0)
    # 422 from the refused image: the one console line a failed fetch leaves
    assert all("422" in e for e in browser_page.console_errors)
    assert browser_page.page_errors == []


@pytest.mark.browser
def test_chat_with_images_when_the_model_reads_them(
    arena: Arena, fake_upstream: FakeUpstream, browser_page: BrowserPage
) -> None:
    _models(arena, fake_upstream)
    page = browser_page.page
    page.goto(arena.url + "/?mode=chat")
    chat = page.locator("#chat")
    attach = chat.get_by_role("button", name="Attach images")
    expect(page.locator("#chat-model option")).to_have_count(4)
    # No model chosen, or one that reads no images: nothing to attach.
    expect(attach).to_be_hidden()
    page.select_option("#chat-model", "blind-c")
    expect(attach).to_be_hidden()
    assert not page.evaluate(PASTE, ["ignored.png", list(picture()), "chat-prompt"])
    page.select_option("#chat-model", "seer-a")
    expect(attach).to_be_visible()

    page.set_input_files("#chat-images-input", files=[_file("blue.png", picture((40, 30)))])
    assert page.evaluate(PASTE, ["red.png", list(picture((12, 12), (200, 30, 30))), "chat-prompt"])
    expect(page.locator("#chat-attachments img")).to_have_count(2)
    page.set_input_files("#chat-images-input", files=[_file("notes.txt", b"hi", "text/plain")])
    expect(page.locator("#chat-notice")).to_contain_text("notes.txt is not a PNG, JPEG")
    page.get_by_role("button", name="Remove image 2").click()
    expect(page.locator("#chat-attachments img")).to_have_count(1)
    # Another model that reads none: what was attached goes with the control.
    page.select_option("#chat-model", "blind-c")
    expect(attach).to_be_hidden()
    expect(page.locator("#chat-attachments")).to_be_hidden()
    page.select_option("#chat-model", "seer-a")
    expect(page.locator("#chat-attachments img")).to_have_count(0)
    page.set_input_files("#chat-images-input", files=[_file("blue.png", picture((40, 30)))])

    page.fill("#chat-prompt", "What do you see?")
    page.press("#chat-prompt", "Control+Enter")
    expect(page.locator("#chat-thread .answer")).to_have_text(
        "I see 1 picture(s): image/png 40x30."
    )
    expect(page.locator("#chat-thread .asked-images img")).to_have_count(1)
    expect(page.locator("#chat-attachments")).to_be_hidden()
    # A follow-up may carry pictures too.
    expect(attach).to_be_visible()
    assert page.evaluate(PASTE, ["red.png", list(picture((12, 12), (200, 30, 30))), "chat-prompt"])
    page.fill("#chat-prompt", "And now?")
    page.get_by_role("button", name="Send follow-up").click()
    expect(page.locator("#chat-thread .answer").nth(1)).to_have_text(
        "I see 2 picture(s): image/png 40x30, image/png 12x12."
    )
    browser_page.screenshot("chat-images.png")

    # After a reload the pictures are not sent back: each prompt says how many it carried.
    page.reload()
    expect(page.locator("#chat-thread .asked-note")).to_have_text(
        ["1 image attached", "1 image attached"]
    )
    expect(attach).to_be_visible()
    page.get_by_role("button", name="New chat").click()
    page.select_option("#chat-model", "blind-c")
    page.fill("#chat-prompt", "Hello")
    page.press("#chat-prompt", "Control+Enter")
    expect(page.locator("#chat-thread .answer")).to_contain_text("You asked: Hello")
    expect(attach).to_be_hidden()
    assert browser_page.console_errors == [] and browser_page.page_errors == []
