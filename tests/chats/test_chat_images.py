"""Direct chats with images through real HTTP, on SQLite and PostgreSQL: pictures re-encoded and
sent upstream with every turn, refused for a model that reads none or when they are not
pictures, moderated with the prompt, kept while a chat carries them, never served."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import ChatImage, Image, PromptImage
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, Received, image_urls, prompt_text
from tests.images.pictures import (
    GPS_IFD,
    HTML_AS_PNG,
    data_url,
    noise_png,
    picture,
    png_with_gps,
)
from tests.sse import read_stream

PROMPT = "What is in this picture?"


def _models(arena: Arena, upstream: FakeUpstream) -> None:
    arena.add_model("seer-a", upstream.base_url, "vision", supports_images=True)
    arena.add_model("seer-b", upstream.base_url, "vision", supports_images=True)
    arena.add_model("blind-c", upstream.base_url, "text-only")


def _create(
    visitor: httpx.Client, model: str, images: list[str], prompt: str = PROMPT
) -> httpx.Response:
    return visitor.post("/api/chats", json={"model": model, "prompt": prompt, "images": images})


def _chat(visitor: httpx.Client, model: str, images: list[str], prompt: str = PROMPT) -> str:
    created = _create(visitor, model, images, prompt)
    assert created.status_code == 201, created.text
    return str(created.json()["chat_id"])


def _follow_up(
    visitor: httpx.Client, chat_id: str, images: list[str], prompt: str
) -> httpx.Response:
    return visitor.post(f"/api/chats/{chat_id}/turns", json={"prompt": prompt, "images": images})


def _stream(visitor: httpx.Client, chat_id: str) -> str:
    """The answer of the chat's waiting turn, once it ended ready."""
    with visitor.stream("GET", f"/api/chats/{chat_id}/stream") as response:
        assert response.status_code == 200, response.read()
        events = [json.loads(line[6:]) for line in response.iter_lines() if line[:6] == "data: "]
    assert events[-1] == {"type": "end", "status": "ready"}, events
    return "".join(e["text"] for e in events if e["type"] == "delta")


def _stored(arena: Arena) -> tuple[dict[str, bytes], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The images by hash, the chats' links and the battles' links."""

    async def work(session: AsyncSession) -> Any:
        images = dict((await session.execute(select(Image.sha256, Image.data))).all())
        chats = await session.execute(
            select(ChatImage.chat_id, ChatImage.turn, ChatImage.position, ChatImage.image_sha256)
        )
        battles = await session.execute(
            select(PromptImage.battle_id, PromptImage.turn, PromptImage.image_sha256)
        )
        return images, sorted(tuple(r) for r in chats), sorted(tuple(r) for r in battles)

    stored: tuple[dict[str, bytes], list[tuple[Any, ...]], list[tuple[Any, ...]]]
    stored = arena.db(work)
    return stored


def _decoded(url: str) -> bytes:
    head, _, payload = url.partition(",")
    assert head.endswith(";base64"), head
    return base64.b64decode(payload)


def _sent(upstream: FakeUpstream, before: int) -> list[Received]:
    return [r for r in upstream.received[before:] if r.path.endswith("/chat/completions")]


def test_chat_images_reach_the_model_re_encoded_with_every_turn(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    # Released conversations: a battle's pictures may then be downloaded, a chat's never.
    arena = arena_factory(release_conversations=True)
    _models(arena, fake_upstream)
    before = len(fake_upstream.received)
    with arena.client() as visitor:
        chat_id = _chat(visitor, "seer-a", [data_url(png_with_gps())])
        assert _stream(visitor, chat_id) == "I see 1 picture(s): image/png 48x36."
        first = _sent(fake_upstream, before)
        assert len(first) == 1
        asked = first[0].body["messages"][-1]
        assert asked["role"] == "user"
        assert asked["content"][0] == {"type": "text", "text": PROMPT}
        (sent_url,) = image_urls(first[0].body)
        assert sent_url.startswith("data:image/png;base64,")
        # Re-encoded: the same pixels, none of the file's metadata.
        sent = _decoded(sent_url)
        upstream_copy = PILImage.open(io.BytesIO(sent))
        assert upstream_copy.size == (48, 36) and upstream_copy.getpixel((5, 5)) == (20, 160, 90)
        assert "exif" not in upstream_copy.info and "Author" not in upstream_copy.info
        assert not upstream_copy.getexif().get_ifd(GPS_IFD)
        assert b"PhoneModel" not in sent and b"Jane" not in sent

        # A follow-up with a picture of its own: both go upstream, each with its prompt.
        second_png = picture((12, 10), (200, 30, 30))
        turn = _follow_up(visitor, chat_id, [data_url(second_png)], "And this one?")
        assert turn.status_code == 201, turn.text
        answer = _stream(visitor, chat_id)
        assert answer == "I see 2 picture(s): image/png 48x36, image/png 12x10."
        messages = _sent(fake_upstream, before)[-1].body["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert [prompt_text(m["content"]) for m in messages[::2]] == [PROMPT, "And this one?"]
        assert [len(image_urls({"messages": [m]})) for m in messages] == [1, 0, 1]
        assert image_urls({"messages": messages[:1]}) == [sent_url]

        # A text follow-up: the pictures are sent again, the new prompt is plain text.
        assert _follow_up(visitor, chat_id, [], "Which is larger?").status_code == 201
        _stream(visitor, chat_id)
        messages = _sent(fake_upstream, before)[-1].body["messages"]
        assert messages[-1] == {"role": "user", "content": "Which is larger?"}
        assert len(image_urls({"messages": messages})) == 2

        # The view says how many pictures each prompt carried, and carries none of them.
        view = visitor.get(f"/api/chats/{chat_id}")
        assert view.status_code == 200
        assert [(m["role"], m["image_count"]) for m in view.json()["messages"]] == [
            ("user", 1),
            ("assistant", 0),
            ("user", 1),
            ("assistant", 0),
            ("user", 0),
            ("assistant", 0),
        ]
        assert view.json()["model"]["supports_images"] is True
        assert "data:" not in view.text and "base64" not in view.text

        images, chat_links, battle_links = _stored(arena)
        assert len(images) == 2 and battle_links == []
        assert [link[:3] for link in chat_links] == [(chat_id, 1, 0), (chat_id, 2, 0)]
        assert images[chat_links[0][3]] == sent
        # The same picture in a second chat is stored once.
        again = _chat(visitor, "seer-b", [data_url(png_with_gps())])
        _stream(visitor, again)
        images, chat_links, _ = _stored(arena)
        assert len(images) == 2 and len(chat_links) == 3
        # A chat's pictures never leave the server, even with conversations released.
        for sha256 in images:
            assert visitor.get(f"/images/{sha256}").status_code == 404


def test_images_for_a_model_that_reads_none_are_refused(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    _models(arena, fake_upstream)
    with arena.client() as visitor:
        refused = _create(visitor, "blind-c", [data_url(picture())])
        assert refused.status_code == 422, refused.text
        assert "model: 'blind-c' does not read images" in refused.json()["detail"]
        assert "send the prompt without images" in refused.json()["detail"]

        chat_id = _chat(visitor, "blind-c", [], "Hello")
        _stream(visitor, chat_id)
        follow_up = _follow_up(visitor, chat_id, [data_url(picture())], "Look at this")
        assert follow_up.status_code == 422, follow_up.text
        assert follow_up.json()["detail"] == (
            "images: 'blind-c' does not read images; send the follow-up without images, or "
            "start a new chat with a model that does"
        )
        # The chat goes on without the picture.
        view = visitor.get(f"/api/chats/{chat_id}").json()
        assert view["status"] == "ready" and view["turns"] == 1
        assert view["model"]["supports_images"] is False
        assert _follow_up(visitor, chat_id, [], "Look at this").status_code == 201
        _stream(visitor, chat_id)
    assert _stored(arena) == ({}, [], [])


def test_what_is_not_a_picture_is_refused_with_a_reason(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    _models(arena, fake_upstream)
    before = len(fake_upstream.received)
    cases = {
        "html": ([data_url(HTML_AS_PNG)], "images[0]: the file is not a PNG, JPEG, WebP or GIF"),
        "five": ([data_url(picture())] * 5, "images: 5 images is over the limit of 4 per prompt"),
        "url": (["https://example.org/cat.png"], "images[0]: not an image data URL"),
    }
    with arena.client() as visitor:
        for label, (images, reason) in cases.items():
            answer = _create(visitor, "seer-a", images)
            assert answer.status_code == 422, (label, answer.text)
            assert reason in answer.json()["detail"], (label, answer.text)
        chat_id = _chat(visitor, "seer-a", [])
        _stream(visitor, chat_id)
        for label, (images, reason) in cases.items():
            answer = _follow_up(visitor, chat_id, images, "And now?")
            assert answer.status_code == 422, (label, answer.text)
            assert reason in answer.json()["detail"], (label, answer.text)
        assert visitor.get(f"/api/chats/{chat_id}").json()["turns"] == 1
    assert _stored(arena) == ({}, [], [])
    # Only the text chat reached a model.
    assert len(_sent(fake_upstream, before)) == 1


def test_a_follow_up_has_room_for_large_pictures(arena: Arena, fake_upstream: FakeUpstream) -> None:
    _models(arena, fake_upstream)
    large = noise_png(700)  # about 1.5 MB: over the body limit of a request without images
    assert len(large) > arena.settings.max_body_bytes
    with arena.client() as visitor:
        chat_id = _chat(visitor, "seer-a", [data_url(large)])
        assert _stream(visitor, chat_id) == "I see 1 picture(s): image/png 700x700."
        turn = _follow_up(visitor, chat_id, [data_url(large)] * 2, "And these two?")
        assert turn.status_code == 201, turn.text
        assert _stream(visitor, chat_id).startswith("I see 3 picture(s)")
        # The other chat routes keep the usual limit.
        feedback = visitor.post(
            f"/api/chats/{chat_id}/feedback",
            content=b'{"turn": 1, "rating": "up", "x": "' + b"a" * 1_100_000 + b'"}',
            headers={"content-type": "application/json"},
        )
        assert feedback.status_code == 413, feedback.text
    images, chat_links, _ = _stored(arena)
    assert len(images) == 1 and len(chat_links) == 3


def test_an_image_a_chat_carries_outlives_its_battle(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    _models(arena, fake_upstream)
    shared = data_url(picture((16, 16), (90, 90, 200)))
    with arena.client() as visitor:
        battle = visitor.post("/api/battles", json={"prompt": PROMPT, "images": [shared]})
        assert battle.status_code == 201, battle.text
        battle_id = battle.json()["battle_id"]
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        chat_id = _chat(visitor, "seer-a", [shared])
        _stream(visitor, chat_id)
        assert visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"}).is_success
        assert visitor.delete(f"/api/battles/{battle_id}").status_code == 200
        images, chat_links, battle_links = _stored(arena)
        assert len(images) == 1 and battle_links == [] and len(chat_links) == 1
        # The chat still sends it with its next turn.
        assert _follow_up(visitor, chat_id, [], "Still there?").status_code == 201
        assert _stream(visitor, chat_id) == "I see 1 picture(s): image/png 16x16."


def test_a_prompt_is_moderated_with_its_images(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(moderation_url=f"{fake_upstream.base_url}/moderations")
    _models(arena, fake_upstream)

    def moderated(before: int) -> list[Any]:
        asked = fake_upstream.received[before:]
        return [r.body["input"] for r in asked if r.path.endswith("/moderations")]

    with arena.client() as visitor:
        before = len(fake_upstream.received)
        chat_id = _chat(visitor, "seer-a", [data_url(png_with_gps())])
        _stream(visitor, chat_id)
        # The prompt first, then the answer once it is over.
        checked, answer_checked = moderated(before)
        assert isinstance(answer_checked, str)  # the answer, as text
        stored_sha = next(iter(_stored(arena)[0]))
        # The moderation endpoint is shown what the model is: the re-encoded picture.
        assert checked[0] == {"type": "text", "text": PROMPT}
        assert checked[1]["type"] == "image_url"
        assert _decoded(checked[1]["image_url"]["url"]) == _stored(arena)[0][stored_sha]

        before = len(fake_upstream.received)
        refused = _follow_up(visitor, chat_id, [data_url(picture())], "Say FLAG-hate things")
        assert refused.status_code == 422 and "flagged it (hate)" in refused.json()["detail"]
        (checked,) = moderated(before)
        assert [part["type"] for part in checked] == ["text", "image_url"]
        refused = _create(visitor, "seer-b", [data_url(picture())], "FLAG-violence here")
        assert refused.status_code == 422 and "flagged it (violence)" in refused.json()["detail"]
        assert len(_sent(fake_upstream, before)) == 0
    images, chat_links, _ = _stored(arena)
    assert len(images) == 1 and [link[:2] for link in chat_links] == [(chat_id, 1)]
