"""The columns of the data exports: name, type and meaning, for the Parquet schema and the card."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import pyarrow as pa

from arena.judge.verdict import CRITERIA
from arena.ratings.category_tags import CRITERIA_TAG, FLAG_TAGS
from arena.ratings.dedup_tags import HIGH_FREQ_KEY, SAMPLED_KEY
from arena.ratings.style_features import BOLD_KEYS, HEADER_KEYS, LIST_KEYS

# Hugging Face `datasets` feature names; a conversation is a list of {role, content} messages,
# conv_metadata FastChat's style counts of both sides (CONV_METADATA_FEATURES), category_tag
# FastChat's judge labels (CATEGORY_TAG_FEATURES), dedup_tag FastChat's {high_freq, sampled}.
FieldType = Literal[
    "string",
    "int64",
    "float64",
    "bool",
    "conversation",
    "images",
    "conv_metadata",
    "category_tag",
    "dedup_tag",
]

MESSAGE_TYPE: Final = pa.struct([("role", pa.string()), ("content", pa.string())])
# The images of a battle's prompts: their hash names the file at /images/{sha256}.
IMAGE_PARTS: Final[tuple[tuple[str, str], ...]] = (
    ("turn", "int64"),
    ("sha256", "string"),
    ("mime_type", "string"),
    ("width", "int64"),
    ("height", "int64"),
)
IMAGE_TYPE: Final = pa.struct(
    [(name, pa.int64() if kind == "int64" else pa.string()) for name, kind in IMAGE_PARTS]
)


def _counts(keys: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(key, pa.int64()) for key in keys]


def _side_style(side: str) -> list[tuple[str, Any]]:
    return [
        (f"sum_assistant_{side}_tokens", pa.int64()),
        (f"header_count_{side}", pa.struct(_counts(HEADER_KEYS))),
        (f"list_count_{side}", pa.struct(_counts(LIST_KEYS))),
        (f"bold_count_{side}", pa.struct(_counts(BOLD_KEYS))),
    ]


CONV_METADATA_TYPE: Final = pa.struct(_side_style("a") + _side_style("b"))
CATEGORY_TAG_TYPE: Final = pa.struct(
    [(CRITERIA_TAG, pa.struct([(name, pa.bool_()) for name in CRITERIA]))]
    + [(tag, pa.struct([(key, pa.bool_())])) for tag, key, _ in FLAG_TAGS]
)
DEDUP_TAG_TYPE: Final = pa.struct([(HIGH_FREQ_KEY, pa.bool_()), (SAMPLED_KEY, pa.bool_())])
_ARROW_TYPES: Final[dict[FieldType, pa.DataType]] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "conversation": pa.list_(MESSAGE_TYPE),
    "images": pa.list_(IMAGE_TYPE),
    "conv_metadata": CONV_METADATA_TYPE,
    "category_tag": CATEGORY_TAG_TYPE,
    "dedup_tag": DEDUP_TAG_TYPE,
}


def _feature_of(arrow_type: pa.DataType) -> Any:
    if isinstance(arrow_type, pa.StructType):
        return {
            arrow_type.field(i).name: _feature_of(arrow_type.field(i).type)
            for i in range(arrow_type.num_fields)
        }
    return "bool" if pa.types.is_boolean(arrow_type) else "int64"


# conv_metadata, category_tag and dedup_tag as `datasets` features: {name: dtype or nested
# {name: dtype}}.
CONV_METADATA_FEATURES: Final[dict[str, Any]] = _feature_of(CONV_METADATA_TYPE)
CATEGORY_TAG_FEATURES: Final[dict[str, Any]] = _feature_of(CATEGORY_TAG_TYPE)
DEDUP_TAG_FEATURES: Final[dict[str, Any]] = _feature_of(DEDUP_TAG_TYPE)


@dataclass(frozen=True)
class ExportField:
    name: str
    type: FieldType
    meaning: str
    # Null where the value does not exist: a battle erased before its style was worked out, a
    # prompt never measured, a battle no judge labelled.
    nullable: bool = False

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.type]


_BATTLE_FIELDS: Final = (
    ExportField("model_a", "string", "public name of the model on side A"),
    ExportField("model_b", "string", "public name of the model on side B"),
    ExportField(
        "winner",
        "string",
        "the vote: `model_a`, `model_b`, `tie` or `tie (bothbad)` (both answers were bad)",
    ),
    ExportField(
        "judge",
        "string",
        "the voter as a salted hash of its session: the same voter has the same judge in every "
        "vote and export; it cannot be turned back into the session",
    ),
    ExportField("turn", "int64", "number of prompts the visitor sent in the battle"),
    ExportField(
        "anony",
        "bool",
        "the names were hidden until the vote: true for a battle, false for a side-by-side "
        "battle whose visitor chose the models (never counted in the ratings)",
    ),
    ExportField("language", "string", "language of the first prompt, as detected by py3langid"),
    ExportField(
        "tstamp",
        "float64",
        "when the vote was cast: seconds since 1970-01-01T00:00:00Z (UTC), to the microsecond; "
        'FastChat\'s convention (`pd.to_datetime(df.tstamp, unit="s", utc=True)`)',
    ),
    ExportField(
        "vote_id", "int64", "the vote's number; a leaderboard's vote-set hash is computed from it"
    ),
    ExportField(
        "tag_coding", "bool", "a prompt or answer contains code (the `coding` category's filter)"
    ),
    ExportField("tag_long", "bool", "the first prompt is long (the `long` category's filter)"),
    ExportField(
        "regenerations",
        "int64",
        "how often the visitor asked both models again for the latest answers before voting; "
        "the vote is on the answers shown last",
    ),
    ExportField(
        "conv_metadata",
        "conv_metadata",
        "each side's style over all its answers, as FastChat's `conv_metadata` holds it, for "
        "style control: `sum_assistant_a_tokens` (answer tokens, cl100k_base encoding), "
        "`header_count_a` {h1..h6}, `list_count_a` {ordered, unordered}, `bold_count_a` "
        "{**, __} (Markdown outside code blocks), and the `_b` twins; null for a battle erased "
        "before its style was worked out (the style-controlled tables leave it out)",
        nullable=True,
    ),
    ExportField(
        "prompt_tokens",
        "int64",
        "estimated tokens of the first prompt (one per CJK character, one per four other "
        "characters), which the `short` view compares with the arena's cut "
        "(ARENA_SHORT_PROMPT_TOKENS); null for a battle whose prompt was never measured (erased "
        "first), which that view keeps",
        nullable=True,
    ),
    ExportField(
        "category_tag",
        "category_tag",
        "the judge's labels of the first prompt, in FastChat's shape: `criteria_v0.1` "
        "(Arena-Hard's seven criteria, each true or false; the `hard` category is 6 or more "
        "true), `math_v0.1` {math}, `if_v0.1` {if}, `creative_writing_v0.1` {creative_writing} "
        "and `refusal_v0.2` {refusal: at least one answer declines; the `refusals` view leaves "
        "those battles out}; null for a battle no judge labelled. The CSV has the columns "
        "`judged`, `judge_hard_score` (criteria met), `judge_math`, "
        "`judge_instruction_following`, `judge_creative_writing` and `judge_refusal` instead",
        nullable=True,
    ),
    ExportField(
        "category_judge",
        "string",
        "the judge that gave category_tag, as `MODEL / prompt VERSION` (its model id and the "
        "version of the arena's prompt); null where no judge labelled the battle",
        nullable=True,
    ),
    ExportField(
        "dedup_tag",
        "dedup_tag",
        "FastChat's deduplication tag {high_freq, sampled}: `sampled` false (and `high_freq` "
        "true) for a vote held back for nothing but its prompt: when the battle started, that "
        "prompt had been used more often than the arena's duplicate limit "
        "(ARENA_DUPLICATE_PROMPT_LIMIT), so the vote is not counted; raters leave such rows out "
        "by default (`arena ratings compute --keep-duplicates` keeps them, as the leaderboard's "
        "views without deduplication do); {high_freq: false, sampled: true} for every other "
        "row. The CSV has the columns `dedup_high_freq` and `dedup_sampled` instead",
    ),
)
_CONVERSATION_FIELDS: Final = (
    ExportField(
        "conversation_a",
        "conversation",
        "side A's conversation as OpenAI-style messages: the visitor's prompts (`user`) and "
        "model A's answers (`assistant`), in order",
    ),
    ExportField("conversation_b", "conversation", "the same for side B"),
    ExportField(
        "text_status",
        "string",
        "`released`; `erased` (its visitor deleted the texts: the vote stays) or `withheld` (its "
        "visitor was not shown the release notice, or an answer named its own model): then both "
        "conversations are empty",
    ),
    ExportField(
        "images",
        "images",
        "the images attached to the visitor's prompts, as {turn, sha256, mime_type, width, "
        "height}: each file (re-encoded, without metadata) is at /images/{sha256}; empty when "
        "the texts are not released",
    ),
)
PREFERENCE_FIELDS: Final = (
    ExportField("prompt", "conversation", "the visitor's first prompt, as one `user` message"),
    ExportField(
        "chosen",
        "conversation",
        "the winning side's continuation: its answers and the visitor's follow-up prompts",
    ),
    ExportField("rejected", "conversation", "the losing side's continuation, the same way"),
)


def battle_fields(with_conversations: bool) -> tuple[ExportField, ...]:
    """The battles export's columns, in the order of the JSON Lines keys."""
    return _BATTLE_FIELDS + (_CONVERSATION_FIELDS if with_conversations else ())


def arrow_schema(fields: tuple[ExportField, ...]) -> pa.Schema:
    # Every value but a missing conv_metadata is present in the JSON Lines export: the same here.
    return pa.schema([pa.field(f.name, f.arrow_type, nullable=f.nullable) for f in fields])
