"""A new battle: its pair drawn and the battle stored, as plain functions over a sync
`Connection` run in the reader and writer threads (`db.Transactions`)."""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.engine import Connection

from arena.battles import integrity
from arena.battles.sampling import read_plan
from arena.battles.turns import ClaimedTurn, check_prompt, read_endpoints
from arena.config import Settings
from arena.errors import InvalidInput, NoImageModelsAvailable, NoModelsAvailable
from arena.images.decoding import CleanImage
from arena.images.store import store_prompt_images
from arena.models import Battle, BattleMode, BattleStatus, Message, Model, ModelStatus, Side
from arena.visitors import Visitor

_INSERT_BATTLE = insert(Battle)
_INSERT_MESSAGE = insert(Message)
_rng = random.SystemRandom()  # as sampling's: a visitor must not predict the drawn side


@dataclass(frozen=True)
class DrawnPair:
    model_a_id: int
    model_b_id: int
    endpoints: list[Any]  # rows of turns.read_endpoints, for planning the first turn
    mode: BattleMode = BattleMode.anonymous


def draw_battle_pair(
    connection: Connection, *, prompt: str, settings: Settings, with_images: bool = False
) -> DrawnPair:
    """Check the prompt, draw the pair (side A, side B) and read their endpoints: reads only,
    so that on SQLite the write lock is not held while they run. A prompt `with_images` is
    drawn a pair among the models that read images only."""
    check_prompt(prompt, settings)
    plan = read_plan(connection, settings=settings, images_only=with_images)
    try:
        model_a_id, model_b_id = plan.draw()
    except NoModelsAvailable:
        if with_images:
            raise NoImageModelsAvailable() from None
        raise
    return DrawnPair(model_a_id, model_b_id, read_endpoints(connection, model_a_id, model_b_id))


_BY_NAME = select(Model.id, Model.name, Model.status, Model.supports_images).where(
    Model.name.in_(bindparam("chosen_names", expanding=True))
)
_OTHERS = select(Model.id).where(
    Model.status == ModelStatus.active,
    Model.sampling_weight > 0,
    Model.id != bindparam("chosen_id"),
)


def chosen_models(
    connection: Connection,
    names: Sequence[str],
    *,
    with_images: bool = False,
    field: str = "models",
) -> list[int]:
    """The ids of the models named `names`, in that order; raise unless each is active (and,
    `with_images`, reads images), naming the request's `field` in the message."""
    rows = connection.execute(_BY_NAME, {"chosen_names": list(names)})
    found = {name: (model_id, status, images) for model_id, name, status, images in rows}
    ids = []
    for name in names:
        if name not in found:
            raise InvalidInput(
                f"{field}: no model is named {name!r}; choose one of the active models the "
                "page lists (names are exact, capitals included)"
            )
        model_id, status, reads_images = found[name]
        if status != ModelStatus.active:
            raise InvalidInput(
                f"{field}: {name!r} is {status.value} and takes no prompts now; choose an active "
                "model"
            )
        if with_images and not reads_images:
            raise InvalidInput(
                f"{field}: {name!r} does not read images; choose a model that does, or send the "
                "prompt without images"
            )
        ids.append(model_id)
    return ids


def choose_named_pair(
    connection: Connection,
    *,
    names: Sequence[str],
    prompt: str,
    settings: Settings,
    rng: random.Random = _rng,
    with_images: bool = False,
) -> DrawnPair:
    """The pair of a named battle: the models named, side A first; with one name, side B drawn
    evenly among the other active models the sampler may draw. Reads only. A prompt
    `with_images` takes models that read images only."""
    check_prompt(prompt, settings)
    ids = chosen_models(connection, names, with_images=with_images)
    if len(ids) == 1:
        others_query = _OTHERS.where(Model.supports_images) if with_images else _OTHERS
        others = list(connection.scalars(others_query, {"chosen_id": ids[0]}))
        if not others:
            raise NoImageModelsAvailable() if with_images else NoModelsAvailable()
        ids.append(rng.choice(others))
    model_a_id, model_b_id = ids
    return DrawnPair(
        model_a_id,
        model_b_id,
        read_endpoints(connection, model_a_id, model_b_id),
        mode=BattleMode.named,
    )


def create_battle(
    connection: Connection,
    *,
    pair: DrawnPair,
    prompt: str,
    visitor: Visitor,
    settings: Settings,
    notice_shown_at: datetime | None = None,
    images: Sequence[CleanImage] = (),
) -> str:
    """Store the battle between the drawn pair and its first prompt (with its `images`, already
    checked and re-encoded); the battle's id. `notice_shown_at`: when its session was served
    the release notice, by the server's record."""
    model_a_id, model_b_id = pair.model_a_id, pair.model_b_id
    battle_id = secrets.token_urlsafe(16)
    flags = integrity.prompt_flags(connection, prompt=prompt, settings=settings)
    # Core statements, not ORM objects: this is the hot path of every battle.
    connection.execute(
        _INSERT_BATTLE,
        {
            "id": battle_id,
            "model_a_id": model_a_id,
            "model_b_id": model_b_id,
            "session_hash": visitor.session_hash,
            "ip_hash": visitor.ip_hash,
            "status": BattleStatus.pending,
            "turns": 1,
            "category_tags": [],
            "flags": flags,
            "notice_shown_at": notice_shown_at,
            "mode": pair.mode,
        },
    )
    connection.execute(
        _INSERT_MESSAGE, {"battle_id": battle_id, "turn": 1, "side": Side.user, "content": prompt}
    )
    store_prompt_images(connection, battle_id=battle_id, turn=1, images=images)
    return battle_id


def first_turn(
    battle_id: str, pair: DrawnPair, prompt: str, images: Sequence[CleanImage] = ()
) -> ClaimedTurn:
    """What the first turn of a battle just created is made of, as its claim would read it."""
    return ClaimedTurn(
        battle_id,
        1,
        pair.model_a_id,
        pair.model_b_id,
        pair.endpoints,
        [(Side.user, prompt)],
        {1: list(images)} if images else {},
    )
