"""Open data: counted votes as FastChat clean battles (CSV, JSON Lines) and DPO preference pairs.

The battles exports also hold two kinds of votes that are not counted, marked as FastChat's files
mark them: those of named battles (`anony: false`) and those held back for nothing but a prompt
past the duplicate limit (`dedup_tag` {"sampled": false}), so that every leaderboard view, those
that rate the duplicates too included, can be re-rated from the download alone.

Texts leave only through released_messages: battles withheld by arena.leaderboard.release are
left out, and every prompt and answer passes arena.leaderboard.redaction first.
"""

from __future__ import annotations

import json
import operator
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, reduce
from json.encoder import encode_basestring as _string
from typing import Any, Final

from sqlalchemy import BigInteger, ColumnElement, String, Text, and_, case, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from arena.battles.integrity import DUPLICATE_PROMPT, NAMED, held_back_only_for
from arena.errors import NotFound
from arena.images.store import released_images
from arena.judge.verdict import CRITERIA
from arena.leaderboard.battles_source import (
    TAG_CODING,
    TAG_LONG,
    BattleText,
    Turn,
    battle_text,
    has_tag,
    labelling_judge,
    tstamp_of,
)
from arena.leaderboard.redaction import redact
from arena.leaderboard.release import WITHHELD, text_released, text_statuses
from arena.models import Battle, BattleMode, JudgeLabel, Message, Model, Side, Vote, Winner
from arena.ratings.category_tags import (
    CATEGORY_TAG_COLUMN,
    JUDGE_COLUMNS,
    CategoryTag,
    category_tag,
)
from arena.ratings.dedup_tags import DEDUP_COLUMNS, DEDUP_TAG_COLUMN, DedupTag, dedup_tag
from arena.spreadsheet_csv import Cell, csv_text
from arena.visitors import salted_hash

# FastChat's clean-battle columns, then the vote id (the vote-set hash is computed from it), the
# two text-derived category flags (the rating engine's coding / long filters read them), and
# what the leaderboard views and the judged categories read: the first prompt's length and the
# judge's labels as FastChat's category_tag, with the judge that gave them, and FastChat's
# dedup_tag, which says whether the vote was held back beyond the duplicate-prompt limit.
BATTLE_COLUMNS: Final[tuple[str, ...]] = (
    "model_a",
    "model_b",
    "winner",
    "judge",
    "turn",
    "anony",
    "language",
    "tstamp",
    "vote_id",
    "tag_coding",
    "tag_long",
    "regenerations",
    "conv_metadata",
    "prompt_tokens",
    CATEGORY_TAG_COLUMN,
    "category_judge",
    DEDUP_TAG_COLUMN,
)
# The CSV has no nested cells: category_tag becomes the judge columns the rating engine reads
# (judged, judge_hard_score = how many criteria are met, judge_math, ...), empty but for
# `judged` where no judge labelled the battle; dedup_tag becomes DEDUP_COLUMNS.
CSV_BATTLE_COLUMNS: Final[tuple[str, ...]] = tuple(
    column
    for name in BATTLE_COLUMNS
    for column in {CATEGORY_TAG_COLUMN: JUDGE_COLUMNS, DEDUP_TAG_COLUMN: DEDUP_COLUMNS}.get(
        name, (name,)
    )
)
# The judge's labels packed in one integer by the export's query: bit i is LABEL_FLAGS[i].
LABEL_FLAGS: Final[tuple[str, ...]] = (
    *CRITERIA,
    "math",
    "instruction_following",
    "creative_writing",
    "refusal",
)
# text_status: released, erased (by its visitor) or withheld (no release notice was shown)
CSV_TEXT_COLUMNS: Final[tuple[str, ...]] = ("text_status", "prompt", "answer_a", "answer_b")
# Rows per read and per chunk sent: small enough that one batch holds the event loop briefly.
BATCH: Final = 1000


class ConversationsNotReleased(NotFound):
    def __init__(self) -> None:
        super().__init__(
            "Preference pairs contain prompts and answers, and this arena does not publish them. "
            "The operator can enable it with ARENA_RELEASE_CONVERSATIONS=true; the anonymised "
            "battles without text are at /battles.jsonl and /battles.csv."
        )


@dataclass(frozen=True, slots=True)
class ExportedVote:
    vote_id: int
    battle_id: str
    model_a: str
    model_b: str
    winner: str
    judge: str
    turn: int
    language: str
    tstamp: float
    tag_coding: bool
    tag_long: bool
    # False for a vote of a named battle (the visitor chose the models): FastChat's marking
    anony: bool = True
    regenerations: int = 0
    # FastChat's conv_metadata as the database holds it (JSON text); None: the battle has none
    conv_metadata: str | None = None
    # The first prompt's estimated tokens (the short-prompts view); None: never measured
    prompt_tokens: int | None = None
    # The judge's labels (bits of LABEL_FLAGS) and who gave them; None: not labelled
    label_bits: int | None = None
    category_judge: str | None = None
    # False for a vote held back for nothing but a prompt past the duplicate limit: FastChat's
    # dedup_tag {"high_freq": true, "sampled": false} (counted votes have no flags, so are true)
    sampled: bool = True


@dataclass(frozen=True)
class ExportScope:
    """Which counted votes an export holds: all of them, or those a snapshot was computed from
    (voted by its time, without the models it left unrated)."""

    until: datetime | None = None
    exclude_models: frozenset[str] = frozenset()


def judge_of(secret: str, session_hash: str) -> str:
    """The voter as a salted hash of its (already salted) session hash: stable, not reversible."""
    return "judge_" + salted_hash(secret, "judge:" + session_hash)[:16]


def named_only() -> ColumnElement[bool]:
    """The condition on `Battle` joined with `Vote` selecting the votes of named battles held
    back by nothing but their mode (integrity.named_vote_flags)."""
    return and_(Battle.mode == BattleMode.named, held_back_only_for(NAMED))


def label_bits() -> Any:
    """The judge's labels of a battle as one integer, bit i set where LABEL_FLAGS[i] holds, or
    -1 where it is not labelled (a SQL expression over JudgeLabel): one small column, which
    the writers turn into category_tag through a table of its 2,048 values."""
    criteria = cast(JudgeLabel.criteria, Text)
    flags = (
        JudgeLabel.math,
        JudgeLabel.instruction_following,
        JudgeLabel.creative_writing,
        JudgeLabel.refusal,
    )
    bits = [
        # The criteria are stored as a JSON list of their names, quoted.
        case((criteria.contains(f'"{name}"', autoescape=True), 1 << i), else_=0)
        for i, name in enumerate(CRITERIA)
    ] + [case((flag.is_(True), 1 << (len(CRITERIA) + j)), else_=0) for j, flag in enumerate(flags)]
    return case((JudgeLabel.labelled_at.is_(None), -1), else_=reduce(operator.add, bits))


def category_tag_of(bits: int) -> CategoryTag:
    """The category_tag of the labels `bits` (label_bits); one dict per value, shared by every
    row that has it (the writers read it, never change it)."""
    return _category_tags()[bits]


@cache
def _category_tags() -> list[CategoryTag]:
    n = len(CRITERIA)
    return [
        category_tag(
            {name: bool(bits >> i & 1) for i, name in enumerate(CRITERIA)},
            math=bool(bits >> n & 1),
            instruction_following=bool(bits >> (n + 1) & 1),
            creative_writing=bool(bits >> (n + 2) & 1),
            refusal=bool(bits >> (n + 3) & 1),
        )
        for bits in range(1 << len(LABEL_FLAGS))
    ]


@cache
def _category_tag_texts() -> list[str]:
    return [json.dumps(tag) for tag in _category_tags()]


@cache
def _flat_labels() -> list[tuple[Cell, ...]]:
    """The CSV's judge cells (JUDGE_COLUMNS) of each value of label_bits."""
    n, flags = len(CRITERIA), range(len(CRITERIA), len(LABEL_FLAGS))
    return [
        (True, (bits & ((1 << n) - 1)).bit_count(), *(bool(bits >> f & 1) for f in flags))
        for bits in range(1 << len(LABEL_FLAGS))
    ]


_UNLABELLED_CELLS: Final[tuple[Cell, ...]] = (False, *(None,) * (len(JUDGE_COLUMNS) - 1))
# dedup_tag by `sampled`: one dict each, shared by every row (the writers never change it), and
# its JSON text, written into each line as it is.
_DEDUP_TAGS: Final[dict[bool, DedupTag]] = {s: dedup_tag(sampled=s) for s in (True, False)}
_DEDUP_TEXTS: Final[dict[bool, str]] = {s: json.dumps(tag) for s, tag in _DEDUP_TAGS.items()}


def _export_select(scope: ExportScope, dialect: str, decisive_only: bool) -> Any:
    model_a = aliased(Model)
    model_b = aliased(Model)
    # Columns are cast in SQL so that rows arrive as plain values: no enum or time-zone
    # conversion per row in Python, which a million-row export would feel.
    moment: Any = (
        cast(func.extract("epoch", Vote.created_at) * 1_000_000, BigInteger)
        if dialect == "postgresql"
        else cast(Vote.created_at, String)
    )
    query = (
        select(
            Vote.id,
            Battle.id,
            model_a.name,
            model_b.name,
            cast(Vote.winner, String),
            Vote.session_hash,
            Battle.turns,
            Battle.language,
            moment,
            case((has_tag(TAG_CODING), 1), else_=0),
            case((has_tag(TAG_LONG), 1), else_=0),
            case((Battle.mode == BattleMode.named, 0), else_=1),
            Battle.regenerations,
            # As text: written into each line as it is, not parsed and written again.
            cast(Battle.conv_metadata, Text),
            Battle.prompt_tokens,
            label_bits(),
            case((JudgeLabel.labelled_at.is_not(None), labelling_judge()), else_=None),
            case((held_back_only_for(DUPLICATE_PROMPT), 0), else_=1),
        )
        .join(Battle, Battle.id == Vote.battle_id)
        .join(model_a, model_a.id == Battle.model_a_id)
        .join(model_b, model_b.id == Battle.model_b_id)
        .outerjoin(JudgeLabel, JudgeLabel.battle_id == Battle.id)
        # The battles export holds the votes of named battles too, marked `anony: false` as
        # FastChat's clean battles are (the rating engine leaves them out), and those held back
        # for nothing but the duplicate limit, marked in dedup_tag (rated by the views that keep
        # duplicates); the preference pairs hold counted votes only.
        .where(
            Vote.counted.is_(True)
            if decisive_only
            else or_(Vote.counted, named_only(), held_back_only_for(DUPLICATE_PROMPT))
        )
        # The recompute reads the votes in this order too: online Elo follows it.
        .order_by(Vote.created_at, Vote.id)
    )
    if scope.until is not None:
        query = query.where(Vote.created_at <= scope.until)
    if scope.exclude_models:
        left_out = sorted(scope.exclude_models)
        query = query.where(model_a.name.not_in(left_out), model_b.name.not_in(left_out))
    if decisive_only:
        query = query.where(Vote.winner.in_([Winner.model_a, Winner.model_b]))
    return query


def _tstamp(moment: Any) -> float:
    if isinstance(moment, int):  # whole microseconds (PostgreSQL)
        return moment / 1_000_000
    # SQLite keeps the UTC time as text
    return tstamp_of(datetime.fromisoformat(str(moment)).replace(tzinfo=UTC))


async def counted_vote_batches(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    secret: str,
    scope: ExportScope,
    decisive_only: bool = False,
) -> AsyncIterator[list[ExportedVote]]:
    """Every counted vote, a batch at a time, from one server-side cursor (one consistent read)."""
    judges: dict[str, str] = {}
    async with sessionmaker() as session:
        connection = await session.connection()
        query = _export_select(scope, connection.dialect.name, decisive_only)
        result = await connection.stream(query.execution_options(yield_per=BATCH))
        async for partition in result.partitions(BATCH):
            batch = []
            for (
                vote_id,
                battle_id,
                name_a,
                name_b,
                winner,
                session_hash,
                turns,
                language,
                moment,
                coding,
                long_,
                anony,
                regenerations,
                style,
                prompt_tokens,
                bits,
                labeller,
                sampled,
            ) in partition:
                judge = judges.get(session_hash)
                if judge is None:
                    judge = judges[session_hash] = judge_of(secret, str(session_hash))
                batch.append(
                    ExportedVote(
                        vote_id=int(vote_id),
                        battle_id=str(battle_id),
                        model_a=str(name_a),
                        model_b=str(name_b),
                        winner=str(winner),
                        judge=judge,
                        turn=int(turns),
                        language=str(language),
                        tstamp=_tstamp(moment),
                        tag_coding=coding == 1,
                        tag_long=long_ == 1,
                        anony=anony == 1,
                        regenerations=int(regenerations),
                        conv_metadata=None if style is None else str(style),
                        prompt_tokens=None if prompt_tokens is None else int(prompt_tokens),
                        label_bits=None if bits is None or bits < 0 else int(bits),
                        category_judge=None if labeller is None else str(labeller),
                        sampled=sampled == 1,
                    )
                )
            yield batch


@dataclass(frozen=True, slots=True)
class ReleasedMessage:
    """One message of a released battle, its text redacted."""

    turn: int
    id: int
    side: str
    content: str


Redactor = Callable[[str], str]


async def released_messages(
    sessionmaker: async_sessionmaker[AsyncSession],
    battle_ids: Sequence[str],
    *,
    redactor: Redactor = redact,
) -> dict[str, list[ReleasedMessage]]:
    """The messages of those of `battle_ids` whose texts may be released, each text redacted.

    A battle whose texts are not released (erased or withheld, release.py) has no entry. `redactor`
    is replaced only by the benchmark, to time the same path without redaction.
    """
    found: dict[str, list[ReleasedMessage]] = {}
    query = (
        select(
            Message.battle_id,
            Message.turn,
            Message.id,
            cast(Message.side, String),
            Message.content,
        )
        .join(Battle, Battle.id == Message.battle_id)
        .where(Message.battle_id.in_(list(battle_ids)), text_released())
        .order_by(Message.battle_id, Message.turn, Message.id)
    )
    async with sessionmaker() as session:
        for battle_id, turn, message_id, side, content in await session.execute(query):
            found.setdefault(battle_id, []).append(
                ReleasedMessage(int(turn), int(message_id), str(side), redactor(content))
            )
    return found


def conversation(messages: Sequence[Turn], side: Side) -> list[dict[str, str]]:
    """One side's view of the battle as OpenAI-style messages (FastChat's conversation_a/_b)."""
    return [
        {"role": "user" if m.side == Side.user else "assistant", "content": m.content}
        for m in sorted(messages, key=lambda m: (m.turn, m.side != Side.user, m.id))
        if m.side in (Side.user, side)
    ]


def _record(vote: ExportedVote) -> dict[str, Any]:
    return {
        **_record_without_style(vote),
        "conv_metadata": None if vote.conv_metadata is None else json.loads(vote.conv_metadata),
        "prompt_tokens": vote.prompt_tokens,
        CATEGORY_TAG_COLUMN: None if vote.label_bits is None else category_tag_of(vote.label_bits),
        "category_judge": vote.category_judge,
        DEDUP_TAG_COLUMN: _DEDUP_TAGS[vote.sampled],
    }


def _record_without_style(vote: ExportedVote) -> dict[str, Any]:
    return {
        "model_a": vote.model_a,
        "model_b": vote.model_b,
        "winner": vote.winner,
        "judge": vote.judge,
        "turn": vote.turn,
        "anony": vote.anony,
        "language": vote.language,
        "tstamp": vote.tstamp,
        "vote_id": vote.vote_id,
        "tag_coding": vote.tag_coding,
        "tag_long": vote.tag_long,
        "regenerations": vote.regenerations,
    }


def battle_record(vote: ExportedVote, texts: ReleasedTexts | None) -> dict[str, Any]:
    """One battles-export record; with `texts` (conversations released), FastChat's
    conversation_a / conversation_b and the battle's `text_status` too: a battle whose texts are
    not released (erased or withheld, release.py) keeps its record with empty conversations, so
    the file still holds every vote a snapshot was computed from."""
    record = _record(vote)
    if texts is not None:
        messages = texts.messages.get(vote.battle_id, [])
        record["conversation_a"] = conversation(messages, Side.a)
        record["conversation_b"] = conversation(messages, Side.b)
        record["text_status"] = texts.statuses.get(vote.battle_id, WITHHELD)
        record["images"] = texts.images.get(vote.battle_id, [])
    return record


def preference_pair(vote: ExportedVote, messages: Sequence[Turn]) -> dict[str, Any]:
    """TRL's conversational preference record of a decisive vote.

    {"prompt": [first user message], "chosen": [the winner's reply and any later turns],
    "rejected": [the same for the loser]}: after the first prompt the two sides' histories differ,
    so each side's later turns belong to its own completion.
    """
    side_a, side_b = conversation(messages, Side.a), conversation(messages, Side.b)
    chosen, rejected = (side_a, side_b) if vote.winner == Winner.model_a else (side_b, side_a)
    return {"prompt": chosen[:1], "chosen": chosen[1:], "rejected": rejected[1:]}


@dataclass(frozen=True)
class ReleasedTexts:
    """A batch's released texts (redacted), and each battle's text_status."""

    messages: dict[str, list[ReleasedMessage]]
    statuses: dict[str, str]
    # Each released battle's images by hash (arena/images/store.py released_images)
    images: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


ExportBatch = tuple[list[ExportedVote], ReleasedTexts | None]


async def export_batches(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    secret: str,
    scope: ExportScope,
    with_conversations: bool,
    decisive_only: bool = False,
    redactor: Redactor = redact,
) -> AsyncIterator[ExportBatch]:
    """The row source of every export format: counted votes a batch at a time, each batch with
    its battles' released texts when conversations are released (else no text is read)."""
    batches = counted_vote_batches(
        sessionmaker, secret=secret, scope=scope, decisive_only=decisive_only
    )
    async for batch in batches:
        if not with_conversations:
            yield batch, None
            continue
        ids = [v.battle_id for v in batch]
        messages = await released_messages(sessionmaker, ids, redactor=redactor)
        statuses = await text_statuses(sessionmaker, ids)
        images = await released_images(sessionmaker, ids)
        yield batch, ReleasedTexts(messages, statuses, images)


def _json_line(vote: ExportedVote) -> str:
    # The same text json.dumps(_record(vote)) gives, written out directly: a million votes.
    bits, labeller = vote.label_bits, vote.category_judge
    return (
        f'{{"model_a": {_string(vote.model_a)}, "model_b": {_string(vote.model_b)}, '
        f'"winner": {_string(vote.winner)}, "judge": {_string(vote.judge)}, '
        f'"turn": {vote.turn}, "anony": {"true" if vote.anony else "false"}, '
        f'"language": {_string(vote.language)}, '
        f'"tstamp": {vote.tstamp!r}, "vote_id": {vote.vote_id}, '
        f'"tag_coding": {"true" if vote.tag_coding else "false"}, '
        f'"tag_long": {"true" if vote.tag_long else "false"}, '
        f'"regenerations": {vote.regenerations}, '
        f'"conv_metadata": {vote.conv_metadata or "null"}, '
        f'"prompt_tokens": {"null" if vote.prompt_tokens is None else vote.prompt_tokens}, '
        f'"category_tag": {"null" if bits is None else _category_tag_texts()[bits]}, '
        f'"category_judge": {"null" if labeller is None else _string(labeller)}, '
        f'"dedup_tag": {_DEDUP_TEXTS[vote.sampled]}}}'
    )


async def battles_jsonl(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    secret: str,
    with_conversations: bool,
    scope: ExportScope,
    redactor: Redactor = redact,
) -> AsyncIterator[bytes]:
    """One JSON object per line per counted vote; conversation_a/_b and text_status when
    conversations are out (battle_record)."""
    batches = export_batches(
        sessionmaker,
        secret=secret,
        scope=scope,
        with_conversations=with_conversations,
        redactor=redactor,
    )
    async for batch, texts in batches:
        if texts is None:
            lines = [_json_line(vote) for vote in batch]
        else:
            lines = [json.dumps(battle_record(v, texts), ensure_ascii=False) for v in batch]
        yield ("\n".join(lines) + "\n").encode()


def _csv_bytes(rows: list[list[Cell]]) -> bytes:
    return csv_text(rows).encode()


async def battles_csv(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    secret: str,
    with_conversations: bool,
    scope: ExportScope,
    redactor: Redactor = redact,
) -> AsyncIterator[bytes]:
    """The same rows as battles_jsonl as plain CSV; texts as text_status / prompt / answer_a /
    answer_b (empty where the battle's texts are not released)."""
    header: list[Cell] = [*CSV_BATTLE_COLUMNS, *(CSV_TEXT_COLUMNS if with_conversations else ())]
    yield _csv_bytes([header])
    batches = export_batches(
        sessionmaker,
        secret=secret,
        scope=scope,
        with_conversations=with_conversations,
        redactor=redactor,
    )
    async for batch, texts in batches:
        rows = []
        for vote in batch:
            row: list[Cell] = _csv_row(vote)
            if texts is not None:
                text: BattleText = battle_text(texts.messages.get(vote.battle_id, []))
                status = texts.statuses.get(vote.battle_id, WITHHELD)
                row.extend([status, text.prompt, text.answer_a, text.answer_b])
            rows.append(row)
        yield _csv_bytes(rows)


def _csv_row(vote: ExportedVote) -> list[Cell]:
    """The CSV_BATTLE_COLUMNS cells of a vote, in their order (written out, not looked up by
    name: a million rows)."""
    labels = _UNLABELLED_CELLS if vote.label_bits is None else _flat_labels()[vote.label_bits]
    return [
        vote.model_a,
        vote.model_b,
        vote.winner,
        vote.judge,
        vote.turn,
        vote.anony,
        vote.language,
        vote.tstamp,
        vote.vote_id,
        vote.tag_coding,
        vote.tag_long,
        vote.regenerations,
        # conv_metadata as its JSON text (parsed and written again it would be the same)
        vote.conv_metadata or "",
        vote.prompt_tokens,
        *labels,
        vote.category_judge,
        # DEDUP_COLUMNS: dedup_high_freq, dedup_sampled
        not vote.sampled,
        vote.sampled,
    ]


def preference_pairs(batch: Sequence[ExportedVote], texts: ReleasedTexts | None) -> list[Any]:
    """The batch's preference records; erased or withheld battles (no text) have none."""
    if texts is None:
        return []
    return [
        preference_pair(vote, texts.messages[vote.battle_id])
        for vote in batch
        if texts.messages.get(vote.battle_id)
    ]


async def preferences_jsonl(
    sessionmaker: async_sessionmaker[AsyncSession], *, secret: str, redactor: Redactor = redact
) -> AsyncIterator[bytes]:
    """One line per counted decisive vote with released texts, in TRL's conversational
    preference format (preference_pair)."""
    batches = export_batches(
        sessionmaker,
        secret=secret,
        scope=ExportScope(),
        with_conversations=True,
        decisive_only=True,
        redactor=redactor,
    )
    async for batch, texts in batches:
        lines = [json.dumps(pair, ensure_ascii=False) for pair in preference_pairs(batch, texts)]
        if lines:
            yield ("\n".join(lines) + "\n").encode()
