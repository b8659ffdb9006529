"""The demo's image readers: `make run` can show an image battle with no model weights."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from arena.upstream.demo import DEMO_MODELS, create_demo_app
from tests.images.pictures import HTML_AS_PNG, data_url, picture
from tests.servers import ServerThread


@pytest.fixture(scope="module")
def demo() -> Iterator[ServerThread]:
    server = ServerThread(create_demo_app(seconds_per_word=0)).start()
    yield server
    server.stop()


def _ask(demo: ServerThread, model: str, urls: list[str]) -> str:
    parts = [{"type": "text", "text": "What is in this picture?"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    response = httpx.post(
        f"{demo.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": parts}]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def test_two_demo_models_read_images() -> None:
    readers = {m.name for m in DEMO_MODELS if m.supports_images}
    assert readers == {"demo-vision", "demo-plain"}


def test_demo_vision_describes_each_picture(demo: ServerThread) -> None:
    red = data_url(picture((80, 40), (200, 30, 30)))
    dark = data_url(picture((20, 60), (10, 10, 20), "JPEG"), "image/jpeg")
    answer = _ask(demo, "demo-vision", [red, dark])
    assert "You sent 2 pictures" in answer
    assert "1. A landscape image, 80 by 40 pixels, dominated by dark red tones." in answer
    assert "2. A portrait image, 20 by 60 pixels, dominated by dark black tones." in answer
    plain = _ask(demo, "demo-plain", [red])
    assert plain.startswith("I see a landscape picture of 80x40 pixels, mostly dark red.")


def test_demo_vision_without_a_picture_or_with_a_broken_one(demo: ServerThread) -> None:
    assert _ask(demo, "demo-vision", []).startswith("I read pictures best")
    assert "unreadable" in _ask(demo, "demo-vision", [data_url(HTML_AS_PNG)])
