"""The README's screenshots of each mode, taken from a real arena on the demo endpoints.

    make screenshots        # writes docs/images/*.png

It starts `arena serve --demo` on a fresh SQLite file and a free port, drives Debian's Chromium
with Playwright through an anonymous battle (after the vote), a battle with an
image, a side-by-side battle and a direct chat, and saves one picture of each. Nothing is
downloaded: the demo endpoints answer locally.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 860}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_arena(database: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ARENA_DATABASE_URL": f"sqlite:///{database}",
        "ARENA_PORT": str(port),
        "ARENA_HOST": "127.0.0.1",
    }
    binary = Path(sys.executable).parent / "arena"
    subprocess.run([str(binary), "db", "upgrade"], env=env, check=True, capture_output=True)
    server = subprocess.Popen([str(binary), "serve", "--demo"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("the arena did not answer /healthz within 120 s")


def picture() -> bytes:
    """A small picture for the image battle: two colour bands."""
    image = Image.new("RGB", (240, 160), (40, 110, 200))
    image.paste((250, 200, 40), (0, 100, 240, 160))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def ask(page: Page, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.press("#prompt", "Control+Enter")
    expect(page.locator("#battle")).to_have_attribute("data-state", "ready", timeout=60_000)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        server = start_arena(Path(scratch) / "arena.db", port)
        url = f"http://127.0.0.1:{port}"
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_context(viewport=VIEWPORT).new_page()

                page.goto(url + "/")
                ask(page, "Explain in three short points why the sky is blue.")
                page.get_by_role("button", name="A is better").click()
                expect(page.locator("#side-a .reveal-name")).not_to_be_empty()
                page.screenshot(path=str(OUT / "battle.png"))

                page.get_by_role("button", name="New battle").click()
                page.set_input_files(
                    "#images-input",
                    files=[{"name": "bands.png", "mimeType": "image/png", "buffer": picture()}],
                )
                ask(page, "What is in this picture?")
                page.screenshot(path=str(OUT / "vision.png"))

                # A fresh visitor for each mode: an open battle would lock the pickers.
                page = browser.new_context(viewport=VIEWPORT).new_page()
                page.goto(url + "/?mode=named")
                page.locator("#named-a option").nth(2).wait_for(state="attached")
                options = page.locator("#named-a option").evaluate_all(
                    "(os) => os.map((o) => o.value).filter(Boolean)"
                )
                page.select_option("#named-a", options[0])
                page.select_option("#named-b", options[1])
                ask(page, "Write a haiku about autumn rain.")
                page.screenshot(path=str(OUT / "side-by-side.png"))

                page = browser.new_context(viewport=VIEWPORT).new_page()
                page.goto(url + "/?mode=chat")
                page.locator("#chat-model option").nth(1).wait_for(state="attached")
                chat_options = page.locator("#chat-model option").evaluate_all(
                    "(os) => os.map((o) => o.value).filter(Boolean)"
                )
                page.select_option("#chat-model", chat_options[0])
                page.fill("#chat-prompt", "Give me a two-line summary of what an arena is.")
                page.click("#chat-send")
                expect(page.locator("#chat-thread .answer")).not_to_be_empty(timeout=60_000)
                page.get_by_role("button", name="Good answer").click()
                page.screenshot(path=str(OUT / "direct-chat.png"))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    for name in sorted(OUT.glob("*.png")):
        sys.stdout.write(f"wrote {name.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
