"""The download of a released image: with ARENA_RELEASE_CONVERSATIONS, the export names each
image by its hash and this route serves it; otherwise no image ever leaves the server."""

from __future__ import annotations

import re
from typing import Final

from fastapi import APIRouter, Request, Response

from arena.errors import NotFound
from arena.images.store import released_image

router = APIRouter(tags=["data"])

_SHA256: Final = re.compile(r"[0-9a-f]{64}")


class ImageNotReleased(NotFound):
    def __init__(self) -> None:
        super().__init__(
            "No released image has this hash. Images are published only with released "
            "conversations (ARENA_RELEASE_CONVERSATIONS); the hashes are in /battles.jsonl."
        )


@router.get("/images/{sha256}", response_class=Response)
async def released_image_file(sha256: str, request: Request) -> Response:
    """A prompt's image as stored (re-encoded, without metadata), by the SHA-256 that the
    battles export lists; 404 unless a battle whose conversation is released carries it."""
    state = request.app.state
    # One answer whether the hash is malformed, unknown or withheld: the route must not tell
    # which images exist.
    if not state.settings.release_conversations or not _SHA256.fullmatch(sha256):
        raise ImageNotReleased()
    image = await released_image(state.sessionmaker, sha256)
    if image is None:
        raise ImageNotReleased()
    return Response(
        image.data,
        media_type=image.mime_type,
        headers={
            # Erasable by its visitor: no copy is kept along the way.
            "Cache-Control": "no-store",
            "Content-Disposition": f'inline; filename="{sha256}.{image.mime_type.split("/")[1]}"',
        },
    )
