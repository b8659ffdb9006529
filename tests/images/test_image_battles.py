"""Battles with images through real HTTP, on SQLite and PostgreSQL: the pair drawn among models
that read images, the images re-encoded once and sent upstream, hostile uploads refused, and no
image leaving the server unless conversations are released."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from arena.battles.turns import NEUTRAL_ERROR
from arena.cli import app as cli
from arena.config import Settings
from arena.db import make_sync_engine
from arena.images.decoding import images_body_bytes
from arena.leaderboard.battles_source import load_counted_battles
from arena.models import Battle, BattleStatus, Image, Model, PromptImage
from tests.conftest import Arena, add_model, make_settings, start_arena
from tests.fake_upstream import FakeUpstream, Received, image_urls
from tests.images.pictures import (
    GPS_IFD,
    HTML_AS_PNG,
    POLYGLOT_TAIL,
    data_url,
    jpeg_with_gps,
    noise_png,
    picture,
    png_bomb,
    polyglot,
)
from tests.registry.accounts import bearer, register, sign_up
from tests.sse import read_stream

PROMPT = "What colour is this picture?"


def _models(arena: Arena | Settings, upstream: FakeUpstream) -> None:
    """Two models that read images and one that does not (never drawn for an image battle)."""
    settings = arena if isinstance(arena, Settings) else arena.settings
    base = upstream.base_url
    add_model(settings, "seer-a", base, "vision", organization="Seer", supports_images=True)
    add_model(settings, "seer-b", base, "vision", organization="Look", supports_images=True)
    add_model(settings, "blind-c", base, "text-only", organization="Text")


@contextmanager
def _arena_with_models(
    database_url: str, folder: Path, upstream: FakeUpstream, **overrides: Any
) -> Iterator[Arena]:
    """An arena whose models are in the database before it starts (no write of its startup
    races theirs)."""
    settings = make_settings(database_url, folder, **overrides)
    _models(settings, upstream)
    arena = start_arena(settings)
    try:
        yield arena
    finally:
        arena.server.stop()


def _create(visitor: httpx.Client, images: list[str], prompt: str = PROMPT) -> httpx.Response:
    return visitor.post("/api/battles", json={"prompt": prompt, "images": images})


def _image_battle(visitor: httpx.Client, images: list[str], prompt: str = PROMPT) -> str:
    created = _create(visitor, images, prompt)
    assert created.status_code == 201, created.text
    return str(created.json()["battle_id"])


def _stored(arena: Arena) -> tuple[list[tuple[str, str, int, int, bytes]], list[tuple[Any, ...]]]:
    async def work(session: AsyncSession) -> Any:
        images = (
            await session.execute(
                select(Image.sha256, Image.mime_type, Image.width, Image.height, Image.data)
            )
        ).all()
        links = (
            await session.execute(
                select(
                    PromptImage.battle_id,
                    PromptImage.turn,
                    PromptImage.position,
                    PromptImage.image_sha256,
                )
            )
        ).all()
        return [tuple(i) for i in images], [tuple(link) for link in links]

    stored: tuple[list[tuple[str, str, int, int, bytes]], list[tuple[Any, ...]]] = arena.db(work)
    return stored


def _vision_tags(arena: Arena) -> list[bool]:
    """Each counted vote's vision tag, in time order, as the recompute reads them."""
    engine = make_sync_engine(arena.settings.database_url)
    try:
        with Session(engine) as session, session.begin():
            battles = load_counted_battles(session)
    finally:
        engine.dispose()
    return [bool(tag) for tag in battles["tag_vision"].tolist()]


def _sent_images(request: Received) -> list[bytes]:
    return [base64.b64decode(url.split(",", 1)[1]) for url in image_urls(request.body)]


def _new_requests(upstream: FakeUpstream, model: str, before: int) -> list[Received]:
    return upstream.requests_for(model)[before:]


def test_an_image_battle_end_to_end(arena: Arena, fake_upstream: FakeUpstream) -> None:
    _models(arena, fake_upstream)
    seen_before = len(fake_upstream.requests_for("vision"))
    blind_before = len(fake_upstream.requests_for("text-only"))
    with arena.client() as visitor:
        battle_id = _image_battle(visitor, [data_url(jpeg_with_gps(), "image/jpeg")])
        stream = read_stream(visitor, battle_id)
        assert stream.end == {"type": "end", "status": "ready"}
        assert stream.text("a") == stream.text("b") == "I see 1 picture(s): image/jpeg 64x48."
        # A second battle with the same picture stores it once.
        again = _image_battle(visitor, [data_url(jpeg_with_gps(), "image/jpeg")])
        assert read_stream(visitor, again).end["status"] == "ready"
        vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
        assert vote.status_code == 200, vote.text
        assert {vote.json()["model_a"]["name"], vote.json()["model_b"]["name"]} == {
            "seer-a",
            "seer-b",
        }
    images, links = _stored(arena)
    assert len(images) == 1
    sha256, mime_type, width, height, data = images[0]
    assert (mime_type, width, height) == ("image/jpeg", 64, 48)
    assert sorted(links) == sorted([(battle_id, 1, 0, sha256), (again, 1, 0, sha256)])
    # What went upstream is the stored, re-encoded picture: no EXIF, no GPS position.
    sent = _new_requests(fake_upstream, "vision", seen_before)
    assert len(sent) == 4 and all(_sent_images(r) == [data] for r in sent)
    first_user = sent[0].body["messages"][-1]
    assert first_user["content"][0] == {"type": "text", "text": PROMPT}
    assert first_user["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    upstream_copy = PILImage.open(io.BytesIO(_sent_images(sent[0])[0]))
    assert not upstream_copy.getexif().get_ifd(GPS_IFD) and b"PhoneModel" not in data
    # The model that reads no images was never drawn.
    assert len(fake_upstream.requests_for("text-only")) == blind_before


def test_a_follow_up_sends_the_first_prompts_images_again(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    _models(arena, fake_upstream)
    with arena.client() as visitor:
        png, webp = picture((30, 20)), picture((12, 12), fmt="WEBP")
        battle_id = _image_battle(visitor, [data_url(png), data_url(webp, "image/webp")])
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        turn = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "And the size?"})
        assert turn.status_code == 201, turn.text
        stream = read_stream(visitor, battle_id)
        assert stream.end["status"] == "ready"
        assert stream.text("a") == "I see 2 picture(s): image/png 30x20, image/webp 12x12."
    follow_up = fake_upstream.requests_for("vision")[-1].body["messages"]
    assert [m["role"] for m in follow_up] == ["user", "assistant", "user"]
    assert follow_up[2]["content"] == "And the size?"
    assert len(image_urls({"messages": follow_up[:1]})) == 2


def test_no_image_battle_without_two_models_that_read_images(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("seer-a", fake_upstream.base_url, "vision", supports_images=True)
    arena.add_model("blind-c", fake_upstream.base_url, "text-only")
    arena.add_model("blind-d", fake_upstream.base_url, "normal")
    with arena.client() as visitor:
        refused = _create(visitor, [data_url(picture())])
        assert refused.status_code == 503
        assert refused.json()["detail"] == (
            "Fewer than two active models read images, so a battle with images cannot start; "
            "send the prompt without images."
        )
        # Text battles go on as before.
        assert _create(visitor, []).status_code == 201
    assert _stored(arena) == ([], [])


def test_hostile_uploads_are_refused_with_a_reason(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    _models(arena, fake_upstream)
    blind_before = len(fake_upstream.requests_for("text-only"))
    with arena.client() as visitor:
        cases = {
            "html": ([data_url(HTML_AS_PNG)], "images[0]: the file is not a PNG, JPEG, WebP"),
            "bomb": ([data_url(picture()), data_url(png_bomb())], "images[1]: the picture is"),
            "large": ([data_url(png_bomb(6_000))], "6000x6000 pixels is over the limit"),
            "url": (["https://example.org/cat.png"], "images[0]: not an image data URL"),
            "five": ([data_url(picture())] * 5, "5 images is over the limit of 4"),
            "base64": (["data:image/png;base64,%%%"], "base64 is damaged"),
        }
        for label, (images, reason) in cases.items():
            answer = _create(visitor, images)
            assert answer.status_code == 422, (label, answer.text)
            assert reason in answer.text, (label, answer.text)
        not_a_list = visitor.post("/api/battles", json={"prompt": PROMPT, "images": "x"})
        assert not_a_list.status_code == 422
        # A polyglot is accepted as the picture it also is: only the picture is kept.
        battle_id = _image_battle(visitor, [data_url(polyglot())])
        assert read_stream(visitor, battle_id).end["status"] == "ready"
    images, _ = _stored(arena)
    assert len(images) == 1 and POLYGLOT_TAIL not in images[0][4] and b"<html" not in images[0][4]
    sent = _sent_images(fake_upstream.requests_for("vision")[-1])
    assert sent == [images[0][4]]
    assert len(fake_upstream.requests_for("text-only")) == blind_before


def test_a_50_mb_upload_is_refused_while_four_large_images_fit(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    # Each side's request carries some 27 MB of pictures: time to send and read them.
    timeouts = {"first_token_timeout": 30.0, "total_timeout": 60.0}
    with (
        _arena_with_models(database_url, tmp_path, fake_upstream, **timeouts) as arena,
        arena.client() as visitor,
    ):
        limit = images_body_bytes(arena.settings)
        huge = b'{"prompt": "hi", "images": ["data:image/png;base64,' + b"A" * 50_000_000 + b'"]}'
        answer = visitor.post(
            "/api/battles", content=huge, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 413
        assert answer.json()["detail"] == (
            f"The request body is over this server's limit of {limit} bytes; send a smaller one."
        )

        def chunks() -> Any:
            yield huge[:1_000_000]
            for start in range(1_000_000, len(huge), 1_000_000):
                yield huge[start : start + 1_000_000]

        chunked = visitor.post(
            "/api/battles", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
        # Four pictures just under the 5 MB limit each (noise does not compress) fit the body.
        large = noise_png(1_280)
        assert 4_800_000 < len(large) <= arena.settings.max_image_bytes
        battle_id = _image_battle(visitor, [data_url(large)] * 4)
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        over = noise_png(1_300)
        assert len(over) > arena.settings.max_image_bytes
        too_large = _create(visitor, [data_url(over)])
        assert too_large.status_code == 422 and "5,000,000 bytes" in too_large.text
    images, links = _stored(arena)
    assert len(images) == 1 and len(links) == 4


def test_a_model_that_claims_image_support_and_fails(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    with arena.client() as owner:
        token = sign_up(owner)
        # The probe sends a tiny picture to a model that declares image support.
        claimed = register(
            owner, token, fake_upstream.base_url, "liar-7b", "text-only", supports_images=True
        )
        assert claimed.status_code == 422, claimed.text
        assert (
            "supports_images: the endpoint answered a text prompt but not one with a picture"
            in claimed.json()["detail"]
        )
        assert "image input is not supported" in claimed.json()["detail"]
        plain = register(owner, token, fake_upstream.base_url, "liar-7b", "text-only")
        assert plain.status_code == 201, plain.text
        assert plain.json()["probe"]["ok"] is True
        changed = owner.patch(
            "/api/models/liar-7b", json={"supports_images": True}, headers=bearer(token)
        )
        assert changed.status_code == 422 and "supports_images" in changed.text
        mine = owner.get("/api/models/liar-7b", headers=bearer(token)).json()
        assert mine["supports_images"] is False
        seer = register(
            owner, token, fake_upstream.base_url, "seer-9b", "vision", supports_images=True
        )
        assert seer.status_code == 201, seer.text
        probe = fake_upstream.requests_for("vision")[-1]
        assert len(_sent_images(probe)) == 1
        before_test = len(fake_upstream.requests_for("vision"))
        tested = owner.post("/api/models/seer-9b/test", headers=bearer(token))
        assert tested.json()["ok"] is True
        # text, then the picture
        assert len(fake_upstream.requests_for("vision")) == before_test + 2
    # Declared by the operator without a probe, it fails in a battle: a neutral error.
    arena.add_model("seer-a", fake_upstream.base_url, "vision", supports_images=True)
    arena.add_model("liar-b", fake_upstream.base_url, "text-only", supports_images=True)
    with arena.client() as visitor:
        battle_id = _image_battle(visitor, [data_url(picture())])
        stream = read_stream(visitor, battle_id)
        assert stream.end["status"] == "failed"
        errors = [e for e in stream.events if e["type"] == "error"]
        assert [e["message"] for e in errors] == [NEUTRAL_ERROR]
        assert "image input" not in json.dumps(stream.events)
        vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
        assert vote.status_code == 409


def test_images_leave_only_with_released_conversations(
    arena_factory: Callable[..., Arena],
    database_url: str,
    tmp_path: Path,
    fake_upstream: FakeUpstream,
) -> None:
    with (
        _arena_with_models(database_url, tmp_path, fake_upstream) as closed,
        closed.client() as visitor,
    ):
        visitor.get("/")
        battle_id = _image_battle(visitor, [data_url(picture((9, 9)))])
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        assert visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"}).is_success
        (sha256, *_), _ = _stored(closed)[0][0], None
        assert visitor.get(f"/images/{sha256}").status_code == 404
        record = json.loads(visitor.get("/battles.jsonl").text.splitlines()[0])
        assert "images" not in record and "conversation_a" not in record

    released = arena_factory(release_conversations=True)
    with released.client() as reader, released.client() as unwarned:
        reader.get("/")  # the release notice is served: this visitor's texts may be released
        shown = _image_battle(reader, [data_url(picture((9, 9)))], "Released picture?")
        assert read_stream(reader, shown).end["status"] == "ready"
        # Not voted yet: nothing public moves when a battle starts.
        assert reader.get(f"/images/{sha256}").status_code == 404
        assert reader.post(f"/api/battles/{shown}/vote", json={"winner": "tie"}).is_success
        served = reader.get(f"/images/{sha256}")
        assert served.status_code == 200, served.text
        assert served.headers["content-type"] == "image/png"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert PILImage.open(io.BytesIO(served.content)).size == (9, 9)
        lines = [json.loads(line) for line in reader.get("/battles.jsonl").text.splitlines()]
        by_status = {r["text_status"]: r for r in lines}
        assert by_status["released"]["images"] == [
            {"turn": 1, "sha256": sha256, "mime_type": "image/png", "width": 9, "height": 9}
        ]
        # A visitor never shown the notice: its picture stays on the server.
        hidden_png = picture((7, 7), (230, 210, 40))
        hidden = _image_battle(unwarned, [data_url(hidden_png)], "Hidden picture?")
        assert read_stream(unwarned, hidden).end["status"] == "ready"
        assert unwarned.post(f"/api/battles/{hidden}/vote", json={"winner": "tie"}).is_success
        hidden_sha = next(i[0] for i in _stored(released)[0] if i[2] == 7)
        assert reader.get(f"/images/{hidden_sha}").status_code == 404
        assert reader.get("/images/not-a-hash").status_code == 404
        # Erased by its visitor: the picture goes (the other battle that carried it is the
        # unreleased one of the first arena, so the file stays in the database for it).
        assert reader.delete(f"/api/battles/{shown}").status_code == 200
        assert reader.get(f"/images/{sha256}").status_code == 404
        assert unwarned.delete(f"/api/battles/{hidden}").status_code == 200
    images, links = _stored(released)
    assert hidden_sha not in {i[0] for i in images}
    assert {link[0] for link in links} == {battle_id}

    # Every battle here had pictures: the vision category holds all three votes.
    assert _vision_tags(released) == [True, True, True]


def test_text_battles_are_not_in_the_vision_category(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    _models(arena, fake_upstream)
    with arena.client() as visitor:
        ids = [_image_battle(visitor, [data_url(picture())]), _image_battle(visitor, [])]
        for battle_id in ids:
            assert read_stream(visitor, battle_id).end["status"] == "ready"
            assert visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"}).is_success

    assert _vision_tags(arena) == [True, False]

    async def supports(session: AsyncSession) -> dict[str, bool]:
        rows = await session.execute(select(Model.name, Model.supports_images))
        return {str(name): bool(flag) for name, flag in rows}

    assert arena.db(supports) == {"seer-a": True, "seer-b": True, "blind-c": False}

    async def statuses(session: AsyncSession) -> int:
        return int(
            await session.scalar(
                select(func.count()).select_from(Battle).where(Battle.status == BattleStatus.voted)
            )
            or 0
        )

    assert arena.db(statuses) == 2


def test_the_operator_declares_image_support_on_the_command_line(
    arena: Arena, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    env = {
        "ARENA_DATABASE_URL": arena.settings.database_url,
        "ARENA_DATA_DIR": str(tmp_path),
        "ARENA_SECRET_KEY": arena.settings.resolved_secret_key(),
    }
    for name, flags in (
        ("cli-seer", ["--supports-images"]),
        ("cli-seer-2", ["--supports-images"]),
        ("cli-blind", []),
    ):
        args = ["models", "add", "--name", name, "--base-url", fake_upstream.base_url]
        added = CliRunner().invoke(cli, [*args, "--model", "vision", *flags], env=env)
        assert added.exit_code == 0, added.output

    async def supports(session: AsyncSession) -> dict[str, bool]:
        rows = await session.execute(select(Model.name, Model.supports_images))
        return {str(name): bool(flag) for name, flag in rows}

    assert arena.db(supports) == {"cli-seer": True, "cli-seer-2": True, "cli-blind": False}
    with arena.client() as visitor:
        battle_id = _image_battle(visitor, [data_url(picture())])
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"})
        drawn = {vote.json()["model_a"]["name"], vote.json()["model_b"]["name"]}
        assert drawn == {"cli-seer", "cli-seer-2"}
