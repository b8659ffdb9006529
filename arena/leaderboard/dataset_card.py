"""The dataset card beside an export: fields, period, filters, redaction, counts, hash, licence.

A Markdown file with YAML front matter in the shape of a Hugging Face dataset card, so the
files and their card can be uploaded together as they are; the facts that are not part of the
Hugging Face schema sit under the `arena` key of the front matter and in the text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import yaml
from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from arena.leaderboard.downloads import ExportedVote, ExportScope, export_batches
from arena.leaderboard.export_description import (
    export_filters,
    redaction_applied,
    redaction_summary,
)
from arena.leaderboard.export_fields import (
    CATEGORY_TAG_FEATURES,
    CONV_METADATA_FEATURES,
    DEDUP_TAG_FEATURES,
    IMAGE_PARTS,
    ExportField,
)
from arena.leaderboard.snapshots import ALL, BT
from arena.models import RatingSnapshot

ExportKind = Literal["battles", "preferences"]
CARD_TYPE: Final = "text/markdown; charset=utf-8"
WINNERS: Final = ("model_a", "model_b", "tie", "tie (bothbad)")
_TITLES: Final[dict[ExportKind, str]] = {
    "battles": "Arena battles",
    "preferences": "Arena preference pairs",
}
_SUMMARIES: Final[dict[ExportKind, str]] = {
    "battles": (
        "One row per counted vote of this arena: which two models met in an anonymous battle "
        "and which one the visitor preferred (and the votes of side-by-side battles, marked "
        "`anony: false`, and those held back beyond the duplicate-prompt limit, marked "
        "`dedup_tag` `sampled: false`), in FastChat's clean-battle columns, so the "
        "leaderboard can be recomputed with FastChat's notebook or `arena ratings compute "
        "--battles FILE`."
    ),
    "preferences": (
        "One row per counted decisive vote of this arena as a preference pair in TRL's "
        "conversational format (`prompt`, `chosen`, `rejected`), ready for DPO-style training."
    ),
}
_TAGS: Final[dict[ExportKind, list[str]]] = {
    "battles": ["chatbot-arena", "human-preference", "pairwise-comparison"],
    "preferences": ["chatbot-arena", "human-preference", "dpo"],
}
# Hugging Face's size buckets, by upper bound.
_SIZES: Final = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
)


@dataclass
class ExportStats:
    """Counts over the rows of one export, gathered as they stream past."""

    rows: int = 0
    # Of which votes of named (side-by-side) battles, `anony: false`: no rating counts them
    named: int = 0
    # Of which votes held back beyond the duplicate-prompt limit, dedup_tag `sampled: false`:
    # only the views that keep duplicates rate them
    duplicates: int = 0
    first_tstamp: float | None = None
    last_tstamp: float | None = None
    winners: Counter[str] = field(default_factory=Counter)
    battles_per_model: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)

    def add(self, votes: Iterable[ExportedVote]) -> None:
        for vote in votes:
            self.rows += 1
            self.named += 0 if vote.anony else 1
            self.duplicates += 0 if vote.sampled else 1
            if self.first_tstamp is None or vote.tstamp < self.first_tstamp:
                self.first_tstamp = vote.tstamp
            if self.last_tstamp is None or vote.tstamp > self.last_tstamp:
                self.last_tstamp = vote.tstamp
            self.winners[vote.winner] += 1
            self.battles_per_model[vote.model_a] += 1
            self.battles_per_model[vote.model_b] += 1
            self.languages[vote.language or "unknown"] += 1


async def export_stats(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    secret: str,
    scope: ExportScope,
    with_conversations: bool,
    decisive_only: bool,
) -> ExportStats:
    """The counts of an export, read from the same row source as the export itself."""
    stats = ExportStats()
    # The preferences export leaves out the battles without released texts, so its counts
    # read which those are; the battles export keeps every vote and needs no text to count.
    batches = export_batches(
        sessionmaker,
        secret=secret,
        scope=scope,
        with_conversations=with_conversations and decisive_only,
        decisive_only=decisive_only,
        redactor=str,  # counting: nothing leaves, so nothing needs redacting
    )
    async for batch, texts in batches:
        if texts is not None:
            batch = [vote for vote in batch if texts.messages.get(vote.battle_id)]
        stats.add(batch)
    return stats


@dataclass(frozen=True)
class LeaderboardRef:
    """The overall table a card points to, and the hash of the votes it was computed from."""

    snapshot_id: int
    computed_at: datetime
    method: str
    vote_set_hash: str
    n_votes: int


async def matching_leaderboard(
    session: AsyncSession, *, snapshot_id: int | None
) -> LeaderboardRef | None:
    """The overall table of the recompute that made snapshot `snapshot_id`, or the latest one.

    Every table of one recompute shares its time; the overall one (category `all`) was computed
    from exactly the votes a snapshot-scoped export holds.
    """
    query = select(RatingSnapshot).where(RatingSnapshot.category == ALL, RatingSnapshot.view == "")
    if snapshot_id is not None:
        asked = await session.get(RatingSnapshot, snapshot_id)
        if asked is None:
            return None
        query = query.where(RatingSnapshot.computed_at == asked.computed_at).order_by(
            case((RatingSnapshot.method == asked.method, 0), else_=1)
        )
    else:
        query = query.order_by(
            RatingSnapshot.computed_at.desc(), case((RatingSnapshot.method == BT, 0), else_=1)
        )
    found = await session.scalar(query.order_by(RatingSnapshot.id.desc()).limit(1))
    if found is None:
        return None
    return LeaderboardRef(
        snapshot_id=found.id,
        computed_at=found.computed_at,
        method=found.method,
        vote_set_hash=found.vote_set_hash,
        n_votes=found.n_votes,
    )


@dataclass(frozen=True)
class CardFacts:
    """What a card says besides the counts: which export, of what, under which licence."""

    export: ExportKind
    data_files: tuple[str, ...]  # the Parquet file first, then its twins
    fields: tuple[ExportField, ...]
    licence: str
    licence_chosen: bool  # set by the operator, not the default
    scope: ExportScope
    conversations_released: bool
    decisive_only: bool
    leaderboard: LeaderboardRef | None


def _iso(tstamp: float | None) -> str | None:
    if tstamp is None:
        return None
    return datetime.fromtimestamp(tstamp, UTC).isoformat()


def _size_category(rows: int) -> str:
    for bound, label in _SIZES:
        if rows < bound:
            return label
    return "n>100M"


def _feature(f: ExportField) -> dict[str, Any]:
    if f.type == "conversation":
        return {
            "name": f.name,
            "list": [{"name": "role", "dtype": "string"}, {"name": "content", "dtype": "string"}],
        }
    if f.type == "images":
        return {
            "name": f.name,
            "list": [{"name": name, "dtype": kind} for name, kind in IMAGE_PARTS],
        }
    if f.type == "conv_metadata":
        return {"name": f.name, "struct": _struct(CONV_METADATA_FEATURES)}
    if f.type == "category_tag":
        return {"name": f.name, "struct": _struct(CATEGORY_TAG_FEATURES)}
    if f.type == "dedup_tag":
        return {"name": f.name, "struct": _struct(DEDUP_TAG_FEATURES)}
    return {"name": f.name, "dtype": f.type}


def _struct(features: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": name, "struct": _struct(inner)}
        if isinstance(inner, dict)
        else {"name": name, "dtype": inner}
        for name, inner in features.items()
    ]


def _type_label(f: ExportField) -> str:
    if f.type == "images":
        return "list of {turn, sha256, mime_type, width, height}"
    if f.type == "conv_metadata":
        return "struct of counts (int64), or null"
    if f.type == "category_tag":
        return "struct of structs of bool, or null"
    if f.type == "dedup_tag":
        return "struct of bool"
    if f.nullable:
        return f"{f.type}, or null"
    return "list of {role, content} (strings)" if f.type == "conversation" else f.type


def _exact(facts: CardFacts, stats: ExportStats) -> bool:
    """Whether the export holds exactly the leaderboard's votes (so rating it reproduces it)."""
    board = facts.leaderboard
    return (
        board is not None
        and facts.export == "battles"
        and facts.scope.until is not None
        and board.computed_at == facts.scope.until
        and _counted(stats) == board.n_votes
    )


def _counted(stats: ExportStats) -> int:
    """The rows an export holds that the leaderboard's plain tables rate."""
    return stats.rows - stats.named - stats.duplicates


def _front_matter(facts: CardFacts, stats: ExportStats) -> dict[str, Any]:
    board = facts.leaderboard
    return {
        "pretty_name": _TITLES[facts.export],
        "license": facts.licence.lower(),
        "size_categories": [_size_category(stats.rows)],
        "tags": _TAGS[facts.export],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": "train", "path": facts.data_files[0]}],
            }
        ],
        "dataset_info": {
            "features": [_feature(f) for f in facts.fields],
            "splits": [{"name": "train", "num_examples": stats.rows}],
        },
        "arena": {
            "export": facts.export,
            "rows": stats.rows,
            "held_back_duplicates": stats.duplicates,
            "models": len(stats.battles_per_model),
            "votes_by_winner": {w: stats.winners.get(w, 0) for w in WINNERS},
            "collection_period": {
                "first": _iso(stats.first_tstamp),
                "last": _iso(stats.last_tstamp),
            },
            "leaderboard": None
            if board is None
            else {
                "snapshot_id": board.snapshot_id,
                "computed_at": board.computed_at.isoformat(),
                "method": board.method,
                "n_votes": board.n_votes,
                "vote_set_hash": board.vote_set_hash,
                "same_votes": _exact(facts, stats),
            },
            "license": facts.licence,
            "license_chosen_by_operator": facts.licence_chosen,
            "conversations_released": facts.conversations_released,
            "filters": export_filters(
                scope=facts.scope,
                conversations_released=facts.conversations_released,
                decisive_only=facts.decisive_only,
            ),
            "redaction": redaction_applied(conversations_released=facts.conversations_released),
        },
    }


def _leaderboard_text(facts: CardFacts, stats: ExportStats) -> list[str]:
    board = facts.leaderboard
    if board is None:
        return ["No leaderboard has been computed yet, so there is no vote-set hash to match."]
    said = [
        f"Vote-set hash: `{board.vote_set_hash}`",
        "",
        f"That is the hash of the votes behind the overall leaderboard of snapshot "
        f"{board.snapshot_id} ({board.method}, computed at {board.computed_at.isoformat()}, "
        f"{board.n_votes:,} votes): SHA-256 over the line `arena-vote-ids-v1` and the sorted "
        "`vote_id`s, one per line.",
        "",
    ]
    if _exact(facts, stats):
        said.append(
            "This export holds exactly those votes: rating it with `arena ratings compute "
            "--battles FILE` reproduces that table."
        )
    elif facts.export == "battles":
        said.append(
            f"This export holds every counted vote at the time of the download "
            f"({_counted(stats):,}), "
            f"which need not be the leaderboard's; `?snapshot={board.snapshot_id}` on the "
            "download gives exactly the leaderboard's votes."
        )
    else:
        said.append(
            "Preference pairs are the decisive votes among every counted vote at the time of "
            "the download; the leaderboard counts ties too."
        )
    if stats.named:
        said.append(
            f"It also holds {stats.named:,} votes of side-by-side battles, whose visitor chose "
            'the models by name: marked `"anony": false`, as FastChat marks them, and left out '
            "of every rating."
        )
    if stats.duplicates:
        said.append(
            f"It also holds {stats.duplicates:,} votes held back for nothing but a prompt used "
            "more often than the duplicate-prompt limit: marked "
            '`"dedup_tag": {"high_freq": true, "sampled": false}`, as FastChat marks the '
            "prompts its deduplication leaves out. Raters leave them out by default, as the "
            "leaderboard's tables do; `arena ratings compute --keep-duplicates` rates them, as "
            "the views without deduplication do."
        )
    return said


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_card(facts: CardFacts, stats: ExportStats) -> str:
    """The card as Markdown with YAML front matter."""
    front = yaml.safe_dump(
        _front_matter(facts, stats), sort_keys=False, allow_unicode=True, width=1000
    )
    licence = f"`{facts.licence}`, " + (
        "chosen by the operator (ARENA_DATA_LICENSE)."
        if facts.licence_chosen
        else "the arena's default: the operator has not set ARENA_DATA_LICENSE."
    )
    first, last = _iso(stats.first_tstamp), _iso(stats.last_tstamp)
    lines = [
        "---",
        front.rstrip("\n"),
        "---",
        "",
        f"# {_TITLES[facts.export]}",
        "",
        _SUMMARIES[facts.export],
        "",
        "Files: " + ", ".join(f"`{name}`" for name in facts.data_files) + " (the same rows).",
        "",
        "## Fields",
        "",
        "| field | type | meaning |",
        "| --- | --- | --- |",
        *(f"| `{f.name}` | {_type_label(f)} | {_cell(f.meaning)} |" for f in facts.fields),
        "",
        "## Collection period",
        "",
        f"Votes cast from {first} to {last} (UTC)." if first else "No votes yet.",
        "",
        "## Filters",
        "",
        *(
            f"- {_cell(text)}"
            for text in export_filters(
                scope=facts.scope,
                conversations_released=facts.conversations_released,
                decisive_only=facts.decisive_only,
            )
        ),
        "",
        "## Redaction",
        "",
        "Redaction applied: "
        + redaction_summary(conversations_released=facts.conversations_released)
        + ".",
        "",
        "## Counts",
        "",
        f"- rows: {stats.rows:,}",
        *(
            [
                "- of which votes held back beyond the duplicate-prompt limit (`dedup_tag` "
                f"`sampled: false`, left out by raters by default): {stats.duplicates:,}"
            ]
            if facts.export == "battles"
            else []
        ),
        f"- models: {len(stats.battles_per_model)}",
        "- votes by winner: " + ", ".join(f"{w} {stats.winners.get(w, 0):,}" for w in WINNERS),
        "- battles per model: "
        + (", ".join(f"`{m}` {n:,}" for m, n in sorted(stats.battles_per_model.items())) or "none"),
        "- languages of the first prompt: "
        + (", ".join(f"{lang} {n:,}" for lang, n in stats.languages.most_common()) or "none"),
        "",
        "## Leaderboard",
        "",
        *_leaderboard_text(facts, stats),
        "",
        "## Licence",
        "",
        licence,
        "",
        "## Loading",
        "",
        "```python",
        "import pandas as pd",
        f'rows = pd.read_parquet("{facts.data_files[0]}")',
        "```",
        "",
    ]
    return "\n".join(lines)
