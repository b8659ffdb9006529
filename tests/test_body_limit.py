"""Every request body is bounded while it is read: a body over the limit gets a 413 naming the
limit, on the battle's fast lane and in the app alike, declared up front or sent in chunks."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arena.images.decoding import images_body_bytes
from tests.arena_process import ArenaProcess
from tests.conftest import Arena, make_settings, start_arena

# POST /api/battles is served by the fast lane, POST /api/owners by the app; neither needs a
# token, so anyone on the internet can send them.
ROUTES = ["/api/battles", "/api/owners"]
FRAMINGS = ["content-length", "chunked"]
_PIECE = 2**16


def _body(size: int) -> Iterator[bytes]:
    """About `size` bytes of one JSON string, produced piece by piece (never held whole here)."""
    yield b'{"prompt": "'
    piece = b"a" * _PIECE
    for _ in range(size // _PIECE):
        yield piece
    yield b'"}'


def _post(client: httpx.Client, path: str, size: int, framing: str) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if framing == "content-length":
        headers["content-length"] = str(len(b'{"prompt": "') + size // _PIECE * _PIECE + 2)
    # Without a Content-Length, httpx sends an iterator with Transfer-Encoding: chunked.
    return client.post(path, content=_body(size), headers=headers)


def _local_arena(sqlite_template: Path, folder: Path, **overrides: object) -> Arena:
    shutil.copyfile(sqlite_template, folder / "arena.db")
    return start_arena(make_settings(f"sqlite:///{folder / 'arena.db'}", folder, **overrides))


@pytest.mark.slow
def test_a_300_mb_body_is_refused_without_the_server_growing(
    sqlite_template: Path, tmp_path: Path
) -> None:
    shutil.copyfile(sqlite_template, tmp_path / "arena.db")
    settings = make_settings(f"sqlite:///{tmp_path / 'arena.db'}", tmp_path)
    arena = ArenaProcess(settings, tmp_path / "arena.log").start()
    try:
        with httpx.Client(base_url=arena.url, timeout=60) as client:
            # Each route's first request imports and builds what it needs: not counted.
            assert client.post("/api/battles", json={"prompt": "warm"}).status_code == 503
            owner = {"name": "Warm", "email": "warm@example.org"}
            assert client.post("/api/owners", json=owner).status_code == 201
            for path in ROUTES:
                for framing in FRAMINGS:
                    assert _post(client, path, 100_000, framing).status_code != 413
            before = arena.rss()
            answers = {
                (path, framing): _post(client, path, 300 * 2**20, framing)
                for path in ROUTES
                for framing in FRAMINGS
            }
            after = arena.rss()
            assert client.get("/healthz").status_code == 200
    finally:
        arena.stop()
    growth_mb = (after - before) / 2**20
    # A new battle's body may hold up to its own limit (room for images in base64) before the
    # 413; the allocator may keep that much. Nothing beyond it: the 300 MB are never held.
    allowed_mb = 20 + images_body_bytes(settings) / 2**20
    assert growth_mb < allowed_mb, f"RSS grew by {growth_mb:.0f} MB from {before / 2**20:.0f} MB"
    for (path, framing), answer in answers.items():
        assert answer.status_code == 413, (path, framing, answer.status_code, answer.text[:300])
        # A new battle's body may carry images in base64: its limit has room for them.
        limit = images_body_bytes(settings) if path == "/api/battles" else 1_000_000
        assert f"{limit} bytes" in answer.json()["detail"], (path, framing, answer.json())


@pytest.fixture(scope="module")
def small_limit_arena(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Arena]:
    # Without images the battle's body has the plain limit too (images add room for theirs).
    arena = _local_arena(
        sqlite_template,
        tmp_path_factory.mktemp("small"),
        max_body_bytes=4096,
        max_images_per_prompt=0,
    )
    yield arena
    arena.server.stop()


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("path", ROUTES)
def test_the_limit_is_the_setting(small_limit_arena: Arena, path: str, framing: str) -> None:
    with small_limit_arena.client() as client:
        over = _post(client, path, 8 * _PIECE, framing)
        under = _post(client, path, 0, framing)
    assert over.status_code == 413, over.text
    assert over.json() == {
        "detail": "The request body is over this server's limit of 4096 bytes; send a smaller one."
    }
    assert over.headers["content-type"] == "application/json"
    assert over.headers["x-content-type-options"] == "nosniff"
    # The server closes the connection after it, so a client still sending stops.
    assert over.headers["connection"] == "close"
    # Within the limit the request goes where it did before: a 422 for this body's content.
    assert under.status_code == 422, under.text


def test_a_body_just_within_the_limit_is_read_whole(small_limit_arena: Arena) -> None:
    def body(size: int) -> bytes:
        return b'{"prompt": "' + b"b" * (size - len(b'{"prompt": ""}')) + b'"}'

    headers = {"content-type": "application/json"}
    with small_limit_arena.client() as client:
        exact = client.post("/api/battles", content=body(4096), headers=headers)
        one_more = client.post("/api/battles", content=body(4097), headers=headers)
    # No models are registered: a prompt read whole and valid meets that refusal.
    assert exact.status_code == 503, exact.text
    assert one_more.status_code == 413, one_more.text
