"""Attached images in the database: stored once by content hash, linked to the prompts that
carry them (a battle's or a direct chat's), read back for the upstream calls, and released with
a battle's texts or not at all (a chat's never)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from arena.images.decoding import CleanImage
from arena.leaderboard.release import text_released
from arena.models import Battle, ChatImage, Image, PromptImage, Vote


def _insert_if_new(connection: Connection) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on the image's hash: two prompts with the same picture,
    even at the same moment, store it once."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(Image).on_conflict_do_nothing(index_elements=["sha256"])
    if dialect == "sqlite":
        return sqlite.insert(Image).on_conflict_do_nothing(index_elements=["sha256"])
    raise RuntimeError(f"images are stored on SQLite or PostgreSQL, not {dialect}")


def _store_images(connection: Connection, images: Sequence[CleanImage]) -> None:
    """Each distinct image stored unless a prompt (of a battle or a chat) already has it."""
    connection.execute(
        _insert_if_new(connection),
        [
            {
                "sha256": image.sha256,
                "mime_type": image.mime_type,
                "width": image.width,
                "height": image.height,
                "size_bytes": len(image.data),
                "data": image.data,
            }
            for image in {image.sha256: image for image in images}.values()
        ],
    )


def _positions(images: Sequence[CleanImage]) -> list[dict[str, Any]]:
    return [{"position": position, "image_sha256": i.sha256} for position, i in enumerate(images)]


def store_prompt_images(
    connection: Connection, *, battle_id: str, turn: int, images: Sequence[CleanImage]
) -> None:
    """Store the images of the visitor's prompt of `turn` (safe to run twice in a retried
    transaction: nothing is stored twice)."""
    if not images:
        return
    _store_images(connection, images)
    connection.execute(
        insert(PromptImage),
        [{"battle_id": battle_id, "turn": turn, **link} for link in _positions(images)],
    )


def store_chat_images(
    connection: Connection, *, chat_id: str, turn: int, images: Sequence[CleanImage]
) -> None:
    """Store the images of the visitor's prompt of `turn` in a direct chat, as
    `store_prompt_images` does for a battle's."""
    if not images:
        return
    _store_images(connection, images)
    connection.execute(
        insert(ChatImage),
        [{"chat_id": chat_id, "turn": turn, **link} for link in _positions(images)],
    )


_PROMPT_IMAGES = (
    select(
        PromptImage.turn,
        Image.sha256,
        Image.mime_type,
        Image.width,
        Image.height,
        Image.data,
    )
    .join(Image, Image.sha256 == PromptImage.image_sha256)
    .order_by(PromptImage.turn, PromptImage.position)
)


_CHAT_IMAGES = (
    select(ChatImage.turn, Image.sha256, Image.mime_type, Image.width, Image.height, Image.data)
    .join(Image, Image.sha256 == ChatImage.image_sha256)
    .order_by(ChatImage.turn, ChatImage.position)
)


def _by_turn(
    rows: Iterable[tuple[int, str, str, int, int, bytes]],
) -> dict[int, list[CleanImage]]:
    found: dict[int, list[CleanImage]] = {}
    for turn, sha256, mime_type, width, height, data in rows:
        found.setdefault(turn, []).append(CleanImage(sha256, mime_type, width, height, data))
    return found


def read_prompt_images(connection: Connection, *, battle_id: str) -> dict[int, list[CleanImage]]:
    """The images of each of the battle's prompts, by turn, in the order attached."""
    return _by_turn(connection.execute(_PROMPT_IMAGES.where(PromptImage.battle_id == battle_id)))


def read_chat_images(connection: Connection, *, chat_id: str) -> dict[int, list[CleanImage]]:
    """The images of each of the chat's prompts, by turn, in the order attached."""
    return _by_turn(connection.execute(_CHAT_IMAGES.where(ChatImage.chat_id == chat_id)))


def chat_image_counts(connection: Connection, *, chat_id: str) -> dict[int, int]:
    """How many images each of the chat's prompts carries, by turn (turns without any absent)."""
    rows = connection.execute(
        select(ChatImage.turn, func.count())
        .where(ChatImage.chat_id == chat_id)
        .group_by(ChatImage.turn)
    )
    return {int(turn): int(count) for turn, count in rows}


async def images_of_prompt(
    session: AsyncSession, *, battle_id: str, turn: int = 1
) -> list[CleanImage]:
    """The stored, re-encoded images of one prompt of a battle, in the order attached (empty
    for a text-only prompt): what a moderation check of the prompt should look at."""
    rows = await session.execute(
        _PROMPT_IMAGES.where(PromptImage.battle_id == battle_id, PromptImage.turn == turn)
    )
    return [
        CleanImage(sha, mime, width, height, data) for _, sha, mime, width, height, data in rows
    ]


async def battle_has_images(session: AsyncSession, *, battle_id: str) -> bool:
    found = await session.scalar(select(exists().where(PromptImage.battle_id == battle_id)))
    return bool(found)


def battles_with_images(connection: Connection, battle_ids: Sequence[str]) -> set[str]:
    """Which of the battles have an image in one of their prompts (the vision category)."""
    return set(
        connection.execute(
            select(PromptImage.battle_id)
            .where(PromptImage.battle_id.in_(list(battle_ids)))
            .distinct()
        ).scalars()
    )


async def forget_battle_images(session: AsyncSession, *, battle_id: str) -> int:
    """Unlink a battle's images (its visitor erased it) and delete those no other prompt
    carries, a battle's or a chat's; how many images were deleted."""
    hashes = list(
        (
            await session.scalars(
                select(PromptImage.image_sha256).where(PromptImage.battle_id == battle_id)
            )
        ).all()
    )
    if not hashes:
        return 0
    await session.execute(
        delete(PromptImage)
        .where(PromptImage.battle_id == battle_id)
        .execution_options(synchronize_session=False)
    )
    removed = await session.execute(
        delete(Image)
        .where(
            Image.sha256.in_(set(hashes)),
            ~exists().where(PromptImage.image_sha256 == Image.sha256),
            ~exists().where(ChatImage.image_sha256 == Image.sha256),
        )
        .execution_options(synchronize_session=False)
    )
    return int(removed.rowcount)  # type: ignore[attr-defined]


async def released_image(
    sessionmaker: async_sessionmaker[AsyncSession], sha256: str
) -> Image | None:
    """The image with that hash if a battle of the export carries it (a counted vote, its texts
    released), else None: an image leaves the server only as released text does
    (arena/leaderboard/release.py), and only once its battle is settled, as every public figure
    (nothing public moves when a battle starts)."""
    released = (
        select(PromptImage.image_sha256)
        .join(Battle, Battle.id == PromptImage.battle_id)
        .join(Vote, Vote.battle_id == Battle.id)
        .where(PromptImage.image_sha256 == sha256, Vote.counted.is_(True), text_released())
    )
    async with sessionmaker() as session:
        return await session.scalar(select(Image).where(Image.sha256 == sha256, released.exists()))


async def released_images(
    sessionmaker: async_sessionmaker[AsyncSession], battle_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """For the export: each released battle's images as {turn, sha256, mime_type, width,
    height}, by battle id; battles without images or not released have no entry."""
    query = (
        select(
            PromptImage.battle_id,
            PromptImage.turn,
            Image.sha256,
            Image.mime_type,
            Image.width,
            Image.height,
        )
        .join(Image, Image.sha256 == PromptImage.image_sha256)
        .join(Battle, Battle.id == PromptImage.battle_id)
        .where(PromptImage.battle_id.in_(list(battle_ids)), text_released())
        .order_by(PromptImage.battle_id, PromptImage.turn, PromptImage.position)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    async with sessionmaker() as session:
        for battle_id, turn, sha256, mime_type, width, height in await session.execute(query):
            found.setdefault(battle_id, []).append(
                {
                    "turn": int(turn),
                    "sha256": sha256,
                    "mime_type": mime_type,
                    "width": int(width),
                    "height": int(height),
                }
            )
    return found
