"""The counted votes as a battles table (FastChat clean-battle columns) and their category tags."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import pandas as pd
from sqlalchemy import Select, Text, cast, select, update
from sqlalchemy.orm import Session

from arena.models import Battle, Message, Model, Side, Vote
from arena.ratings.categories import (
    LONG_PROMPT_TOKENS,
    detect_language,
    estimate_tokens,
    looks_like_code,
)

log = logging.getLogger(__name__)

TAG_CODING: Final = "coding"
TAG_LONG: Final = "long"
TAG_MULTI_TURN: Final = "multi-turn"
# The columns a recompute reads; FastChat's clean-battle columns plus the vote id (for the vote-set
# hash) and the two text-derived category flags, so no message text is read on a recompute.
BATTLE_FRAME_COLUMNS: Final[tuple[str, ...]] = (
    "vote_id",
    "model_a",
    "model_b",
    "winner",
    "tstamp",
    "turn",
    "anony",
    "language",
    "tag_coding",
    "tag_long",
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_TEXT_BATCH: Final = 500


def tstamp_of(moment: datetime) -> float:
    """Seconds since the epoch as FastChat's tstamp: whole microseconds over 1e6, correctly rounded.

    The export and the recompute both go through this arithmetic (integer microseconds, one
    division), so a downloaded file orders and hashes its battles exactly as the snapshot did.
    """
    return ((moment - _EPOCH) // _MICROSECOND) / 1_000_000


def tstamps_of(moments: Sequence[datetime]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """tstamp_of over many datetimes at once (same integer-microsecond arithmetic)."""
    nanos = pd.to_datetime(pd.Series(moments, dtype=object), utc=True).astype("int64").to_numpy()
    micros = nanos // 1000
    return np.asarray(micros / 1_000_000, dtype=np.float64)


@dataclass(frozen=True)
class BattleText:
    """What the category filters read: the first prompt and each side's answers joined by newlines.

    The same shape as arena.ratings derives from a FastChat conversation (prompt = first user
    turn, answer_a / answer_b = every assistant turn of that side joined by "\\n").
    """

    prompt: str
    answer_a: str
    answer_b: str
    turns: int


def battle_text(messages: Iterable[Message]) -> BattleText:
    ordered = sorted(messages, key=lambda m: (m.turn, m.id))
    prompts = [m.content for m in ordered if m.side == Side.user]
    answers_a = [m.content for m in ordered if m.side == Side.a]
    answers_b = [m.content for m in ordered if m.side == Side.b]
    return BattleText(
        prompt=prompts[0] if prompts else "",
        answer_a="\n".join(answers_a),
        answer_b="\n".join(answers_b),
        turns=len(prompts),
    )


def battle_tags(text: BattleText) -> tuple[str, list[str]]:
    """The language of the first prompt and the category tags, as the rating filters define them."""
    tags: list[str] = []
    if any(looks_like_code(t) for t in (text.prompt, text.answer_a, text.answer_b)):
        tags.append(TAG_CODING)
    if estimate_tokens(text.prompt) >= LONG_PROMPT_TOKENS:
        tags.append(TAG_LONG)
    if text.turns > 1:
        tags.append(TAG_MULTI_TURN)
    return detect_language(text.prompt), tags


def tag_battles(session: Session, battle_ids: Sequence[str]) -> dict[str, tuple[str, list[str]]]:
    """Fill battle.language and battle.category_tags from the messages of the given battles.

    Reads the texts of these battles only, a few hundred at a time; flushes, never commits.
    """
    found: dict[str, tuple[str, list[str]]] = {}
    for start in range(0, len(battle_ids), _TEXT_BATCH):
        chunk = list(battle_ids[start : start + _TEXT_BATCH])
        by_battle: dict[str, list[Message]] = {battle_id: [] for battle_id in chunk}
        for message in session.scalars(select(Message).where(Message.battle_id.in_(chunk))):
            by_battle[message.battle_id].append(message)
        for battle_id, messages in by_battle.items():
            language, tags = battle_tags(battle_text(messages))
            found[battle_id] = (language, tags)
            session.execute(
                update(Battle)
                .where(Battle.id == battle_id)
                .values(language=language[:16], category_tags=tags)
            )
        session.flush()
        session.expunge_all()
    return found


def has_tag(tag: str) -> Any:
    # JSON lists are stored as text on SQLite and as json on PostgreSQL; both cast to the same text.
    return cast(Battle.category_tags, Text).like(f'%"{tag}"%')


def counted_votes_select() -> Select[Any]:
    """Every counted vote with its battle's facts, in time order (vote time, then vote id)."""
    return (
        select(
            Vote.id,
            Battle.model_a_id,
            Battle.model_b_id,
            Vote.winner,
            Vote.created_at,
            Battle.turns,
            Battle.language,
            has_tag(TAG_CODING),
            has_tag(TAG_LONG),
            Battle.id,
        )
        .join(Battle, Battle.id == Vote.battle_id)
        .where(Vote.counted.is_(True))
        .order_by(Vote.created_at, Vote.id)
    )


def model_names(session: Session) -> dict[int, str]:
    return {int(row[0]): str(row[1]) for row in session.execute(select(Model.id, Model.name))}


def empty_battles_frame() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in BATTLE_FRAME_COLUMNS})


def load_counted_battles(session: Session, *, tag_missing: bool = True) -> pd.DataFrame:
    """The counted votes as a battles table, one row per vote, in time order.

    Columns: BATTLE_FRAME_COLUMNS (vote_id, model_a, model_b, winner, tstamp, turn, anony,
    language, tag_coding, tag_long). Battles voted on since the last call have no tags yet; with
    `tag_missing` their texts are read once and the tags stored (flushed, not committed), so later
    calls read no text at all.
    """
    names = model_names(session)
    rows = session.execute(counted_votes_select()).all()
    if not rows:
        return empty_battles_frame()
    (vote_id, a_id, b_id, winner, created, turns, language, coding, long_, battle_id) = zip(
        *rows, strict=True
    )
    languages = list(language)
    coding_flags = list(coding)
    long_flags = list(long_)
    untagged = [i for i, lang in enumerate(languages) if not lang]
    if tag_missing and untagged:
        tags = tag_battles(session, [battle_id[i] for i in untagged])
        for i in untagged:
            lang, battle_tag_list = tags[battle_id[i]]
            languages[i] = lang
            coding_flags[i] = TAG_CODING in battle_tag_list
            long_flags[i] = TAG_LONG in battle_tag_list
        log.info("tagged %d newly voted battle(s) with language and categories", len(untagged))
    id_to_position = {model_id: i for i, model_id in enumerate(names)}
    labels = np.array(list(names.values()), dtype=object)
    codes_a = np.fromiter((id_to_position[m] for m in a_id), dtype=np.int64, count=len(rows))
    codes_b = np.fromiter((id_to_position[m] for m in b_id), dtype=np.int64, count=len(rows))
    return pd.DataFrame(
        {
            "vote_id": np.asarray(vote_id, dtype=np.int64),
            "model_a": labels[codes_a],
            "model_b": labels[codes_b],
            "winner": [str(w.value) if hasattr(w, "value") else str(w) for w in winner],
            "tstamp": tstamps_of(created),
            "turn": np.asarray(turns, dtype=np.int64),
            "anony": np.ones(len(rows), dtype=bool),
            "language": languages,
            "tag_coding": np.asarray([bool(flag) for flag in coding_flags], dtype=bool),
            "tag_long": np.asarray([bool(flag) for flag in long_flags], dtype=bool),
        }
    )
