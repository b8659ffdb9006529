"""The counted votes as a battles table (FastChat clean-battle columns) and their category tags."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import BigInteger, Text, case, cast, func, or_, select, update
from sqlalchemy.orm import Session

from arena.battles.integrity import counted_or_duplicate
from arena.battles.style_backfill import fill_styles, unstyled_battle_ids
from arena.images.store import battles_with_images
from arena.models import Battle, JudgeLabel, Message, Model, Side, Vote
from arena.ratings.categories import (
    LONG_PROMPT_TOKENS,
    detect_language,
    estimate_tokens,
    looks_like_code,
)
from arena.ratings.style_control import STYLE_COLUMNS
from arena.ratings.views import DUPLICATE_COLUMN, REFUSAL_COLUMN

log = logging.getLogger(__name__)

TAG_CODING: Final = "coding"
TAG_LONG: Final = "long"
TAG_MULTI_TURN: Final = "multi-turn"
# A prompt of the battle carries images (arena/images/); not text-derived, so a tag only.
TAG_VISION: Final = "vision"
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
    "tag_vision",
    "judged",
    "judge_hard_score",
    "judge_math",
    "judge_instruction_following",
    "judge_creative_writing",
    "judge_refusal",
    "judge",
    *STYLE_COLUMNS,
    "prompt_tokens",
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


class Turn(Protocol):
    """What the text readers need of a message: a stored Message or a released copy of one."""

    @property
    def turn(self) -> int: ...
    @property
    def id(self) -> int: ...
    @property
    def side(self) -> str: ...
    @property
    def content(self) -> str: ...


def battle_text(messages: Iterable[Turn]) -> BattleText:
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


def battle_markers() -> dict[str, Any]:
    """Per-battle markers the leaderboard views read, by battles-table column: a SQL expression
    over a counted vote's row (Battle, Vote, and its JudgeLabel, outer-joined) that is 1 where
    the marker holds, else 0. None today: the refusal view's column (REFUSAL_COLUMN) is the
    judge's refusal label, added by load_counted_battles once a judge has labelled a battle."""
    return {}


def battle_tags(text: BattleText, *, with_images: bool = False) -> tuple[str, list[str]]:
    """The language of the first prompt and the category tags, as the rating filters define them;
    `with_images`: a prompt of the battle carries images (the vision category)."""
    tags: list[str] = []
    if any(looks_like_code(t) for t in (text.prompt, text.answer_a, text.answer_b)):
        tags.append(TAG_CODING)
    if estimate_tokens(text.prompt) >= LONG_PROMPT_TOKENS:
        tags.append(TAG_LONG)
    if text.turns > 1:
        tags.append(TAG_MULTI_TURN)
    if with_images:
        tags.append(TAG_VISION)
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
        with_images = battles_with_images(session.connection(), chunk)
        for battle_id, messages in by_battle.items():
            text = battle_text(messages)
            language, tags = battle_tags(text, with_images=battle_id in with_images)
            found[battle_id] = (language, tags)
            session.execute(
                update(Battle)
                .where(Battle.id == battle_id)
                .values(
                    language=language[:16],
                    category_tags=tags,
                    prompt_tokens=estimate_tokens(text.prompt),
                )
            )
        session.flush()
        session.expunge_all()
    return found


def has_tag(tag: str) -> Any:
    # JSON lists are stored as text on SQLite and as json on PostgreSQL; both cast to the same text.
    return cast(Battle.category_tags, Text).like(f'%"{tag}"%')


def untagged_battle_ids(session: Session) -> list[str]:
    """Battles with a vote a table may rate (counted_or_duplicate) whose language, tags or
    prompt length have not been worked out yet (battles tagged before prompt lengths were
    stored are measured once). Erased battles are left alone: their texts are gone, and
    erasure tagged them while they were there."""
    return list(
        session.scalars(
            select(Battle.id)
            .join(Vote, Vote.battle_id == Battle.id)
            .where(
                counted_or_duplicate(),
                Battle.erased_at.is_(None),
                or_(Battle.language == "", Battle.prompt_tokens.is_(None)),
            )
        )
    )


def labelling_judge() -> Any:
    """The judge that labelled a battle, as tables and exports name it: "model / prompt v1" (a
    SQL expression over JudgeLabel, meaningful where labelled_at is set)."""
    return (
        func.coalesce(JudgeLabel.judge_model, "")
        + " / prompt "
        + func.coalesce(JudgeLabel.prompt_version, "")
    )


def _flag(column: Any) -> Any:
    return case((column.is_(True), 1), else_=0)


def _counted_votes_sql(session: Session, *, with_duplicates: bool, up_to_vote: int | None) -> str:
    """Every counted vote with its battle's facts (unordered: sorting a million rows is cheaper
    in numpy than in the database); `with_duplicates`: the votes held back as duplicate prompts
    only too, marked in the last column.

    The vote time comes as whole microseconds since the epoch on PostgreSQL (EXTRACT gives an
    exact numeric) and as the stored text on SQLite; both become tstamp_of's value.
    """
    dialect = session.get_bind().dialect
    moment: Any = (
        cast(func.extract("epoch", Vote.created_at) * 1_000_000, BigInteger)
        if dialect.name == "postgresql"
        else Vote.created_at
    )
    query = (
        select(
            Vote.id,
            Battle.model_a_id,
            Battle.model_b_id,
            Vote.winner,
            moment,
            Battle.turns,
            Battle.language,
            case((has_tag(TAG_CODING), 1), else_=0),
            case((has_tag(TAG_LONG), 1), else_=0),
            case((has_tag(TAG_VISION), 1), else_=0),
            # The judge's labels; a battle not labelled yet has judged = 0 and no judge.
            case((JudgeLabel.labelled_at.is_not(None), 1), else_=0),
            func.coalesce(JudgeLabel.hard_score, 0),
            _flag(JudgeLabel.math),
            _flag(JudgeLabel.instruction_following),
            _flag(JudgeLabel.creative_writing),
            _flag(JudgeLabel.refusal),
            case((JudgeLabel.labelled_at.is_not(None), labelling_judge()), else_=""),
            *(getattr(Battle, column) for column in STYLE_COLUMNS),
            func.coalesce(Battle.prompt_tokens, -1),
            case((Vote.counted.is_(True), 0), else_=1),
            *battle_markers().values(),
        )
        .join(Battle, Battle.id == Vote.battle_id)
        .outerjoin(JudgeLabel, JudgeLabel.battle_id == Vote.battle_id)
        .where(counted_or_duplicate() if with_duplicates else Vote.counted.is_(True))
    )
    if up_to_vote is not None:
        query = query.where(Vote.id <= up_to_vote)
    return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


_RAW_COLUMNS: Final = (
    "vote_id",
    "a",
    "b",
    "winner",
    "moment",
    "turn",
    "language",
    "coding",
    "long",
    "vision",
    "judged",
    "hard_score",
    "math",
    "instruction_following",
    "creative_writing",
    "refusal",
    "judge",
    *STYLE_COLUMNS,
    "prompt_tokens",
    "duplicate",
)


_TEXT_COLUMNS: Final = ("winner", "language", "judge")


def _texts(column: pd.Series) -> npt.NDArray[np.object_]:
    """A column of texts as an object array of str; a categorical one is expanded from its few
    categories, so each distinct text is one object however many rows hold it."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        names = np.array([str(name) for name in column.cat.categories] + [""], dtype=object)
        codes = column.cat.codes.to_numpy()
        return np.asarray(names[codes], dtype=object)  # code -1 (missing) is the last: ""
    return np.asarray(column.astype(str).to_numpy(dtype=object), dtype=object)


def _raw_columns() -> list[str]:
    return [*_RAW_COLUMNS, *battle_markers()]


def _raw_counted_votes(
    session: Session, *, with_duplicates: bool, up_to_vote: int | None
) -> pd.DataFrame:
    # A million rows through ORM result processing take half a minute; PostgreSQL's COPY to CSV
    # read by pandas takes about a second, so the bulk read bypasses the ORM on purpose.
    sql = _counted_votes_sql(session, with_duplicates=with_duplicates, up_to_vote=up_to_vote)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # The join and its hash table fit in memory with room to spare at a million votes; the
        # default 4 MB spills them to disk. JIT compilation costs more than it saves here.
        connection.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        connection.exec_driver_sql("SET LOCAL jit = off")
        # The planner prices handing a million rows from a parallel worker to the leader above
        # the work it saves; measured, one worker halves the join (a million votes: 2.0 s of
        # server time, 1.1 s). The server's own limit on workers still holds.
        connection.exec_driver_sql("SET LOCAL parallel_setup_cost = 0")
        connection.exec_driver_sql("SET LOCAL parallel_tuple_cost = 0")
        driver = connection.connection.driver_connection
        if driver is None:
            raise RuntimeError("the PostgreSQL connection has no driver connection to COPY with")
        buffer = io.BytesIO()
        with driver.cursor() as cursor, cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
            for chunk in copy:
                buffer.write(chunk)
        if buffer.tell() == 0:
            return pd.DataFrame(columns=_raw_columns())
        buffer.seek(0)
        return pd.read_csv(
            buffer,
            names=_raw_columns(),
            header=None,
            keep_default_na=False,
            # A battle without style features has empty style cells: NaN, as on SQLite.
            na_values={column: [""] for column in STYLE_COLUMNS},
            # A handful of distinct texts each: categories, not a million strings.
            dtype=dict.fromkeys(_TEXT_COLUMNS, "category")
            | dict.fromkeys(STYLE_COLUMNS, "float64"),
        )
    rows = connection.exec_driver_sql(sql).fetchall()
    frame = pd.DataFrame.from_records(rows, columns=_raw_columns())
    if len(frame):
        stamps = pd.to_datetime(frame["moment"], utc=True, format="ISO8601")
        frame["moment"] = stamps.astype("int64") // 1000
    return frame


def model_names(session: Session) -> dict[int, str]:
    return {int(row[0]): str(row[1]) for row in session.execute(select(Model.id, Model.name))}


def empty_battles_frame() -> pd.DataFrame:
    columns = [*BATTLE_FRAME_COLUMNS, *battle_markers()]
    return pd.DataFrame({column: pd.Series(dtype=object) for column in columns})


def tag_voted_battles(session: Session) -> None:
    """Store the language, category tags, prompt length and style features of every battle
    voted on since the last call, read once from its texts; flushes, never commits."""
    untagged = untagged_battle_ids(session)
    if untagged:
        tag_battles(session, untagged)
        log.info("tagged %d newly voted battle(s) with language and categories", len(untagged))
    unstyled = unstyled_battle_ids(session, rated_only=True)
    if unstyled:
        fill_styles(session, unstyled)
        log.info("worked out the style features of %d voted battle(s)", len(unstyled))


def load_counted_battles(
    session: Session,
    *,
    tag_missing: bool = True,
    with_duplicates: bool = False,
    up_to_vote: int | None = None,
) -> pd.DataFrame:
    """The counted votes as a battles table, one row per vote, in time order; `with_duplicates`:
    and the votes held back for nothing but a prompt past the duplicate limit, marked in the
    column DUPLICATE_COLUMN (which only the views that keep duplicates rate).

    Columns: BATTLE_FRAME_COLUMNS (vote_id, model_a, model_b, winner, tstamp, turn, anony,
    language, tag_coding, tag_long, tag_vision, the judge's labels: judged, judge_hard_score,
    judge_math, judge_instruction_following, judge_creative_writing, judge_refusal, and judge,
    naming the judge and prompt version that labelled the battle; the style features
    STYLE_COLUMNS as floats, NaN for a battle that has none; prompt_tokens: NaN where not
    measured), then one boolean column per battle_markers() entry. Battles voted on since the
    last call have no tags yet; with `tag_missing` they are tagged first (tag_voted_battles),
    so later calls read no text at all; without it their language is blank. `up_to_vote`: only
    the votes with an id up to this one.
    """
    if tag_missing:
        tag_voted_battles(session)
    raw = _raw_counted_votes(session, with_duplicates=with_duplicates, up_to_vote=up_to_vote)
    if len(raw) == 0:
        return empty_battles_frame()
    micros = raw["moment"].to_numpy(dtype=np.int64)
    # Time order, then vote id: the order online Elo reads and the export writes.
    raw = raw.iloc[np.lexsort((raw["vote_id"].to_numpy(dtype=np.int64), micros))]
    names = model_names(session)
    labels = np.empty(max(names) + 1, dtype=object)
    labels[list(names)] = list(names.values())
    micros = raw["moment"].to_numpy(dtype=np.int64)
    tokens = raw["prompt_tokens"].to_numpy(dtype=np.float64)
    frame = pd.DataFrame(
        {
            "vote_id": raw["vote_id"].to_numpy(dtype=np.int64),
            "model_a": labels[raw["a"].to_numpy(dtype=np.int64)],
            "model_b": labels[raw["b"].to_numpy(dtype=np.int64)],
            "winner": _texts(raw["winner"]),
            # the same arithmetic as tstamp_of: integer microseconds, one division
            "tstamp": micros / 1_000_000,
            "turn": raw["turn"].to_numpy(dtype=np.int64),
            "anony": np.ones(len(raw), dtype=bool),
            "language": _texts(raw["language"]),
            "tag_coding": raw["coding"].to_numpy(dtype=np.int64) == 1,
            "tag_long": raw["long"].to_numpy(dtype=np.int64) == 1,
            "tag_vision": raw["vision"].to_numpy(dtype=np.int64) == 1,
            "judged": raw["judged"].to_numpy(dtype=np.int64) == 1,
            "judge_hard_score": raw["hard_score"].to_numpy(dtype=np.int64),
            "judge_math": raw["math"].to_numpy(dtype=np.int64) == 1,
            "judge_instruction_following": raw["instruction_following"].to_numpy(dtype=np.int64)
            == 1,
            "judge_creative_writing": raw["creative_writing"].to_numpy(dtype=np.int64) == 1,
            "judge_refusal": raw["refusal"].to_numpy(dtype=np.int64) == 1,
            "judge": _texts(raw["judge"]),
            **{
                column: pd.to_numeric(raw[column]).to_numpy(dtype=np.float64)
                for column in STYLE_COLUMNS
            },
            "prompt_tokens": np.where(tokens < 0, np.nan, tokens),
            **{name: raw[name].to_numpy(dtype=np.int64) == 1 for name in battle_markers()},
        }
    )
    if with_duplicates:
        frame[DUPLICATE_COLUMN] = raw["duplicate"].to_numpy(dtype=np.int64) == 1
    if bool(frame["judged"].any()):
        # The "exclude refusals" view (arena.ratings.views) exists once a judge labels battles:
        # without one, it would be the plain view again, computed for nothing.
        frame[REFUSAL_COLUMN] = frame["judge_refusal"]
    return frame
