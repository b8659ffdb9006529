"""The columns of the data exports: name, type and meaning, for the Parquet schema and the card."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import pyarrow as pa

# Hugging Face `datasets` feature names; a conversation is a list of {role, content} messages.
FieldType = Literal["string", "int64", "float64", "bool", "conversation", "images"]

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
_ARROW_TYPES: Final[dict[FieldType, pa.DataType]] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "conversation": pa.list_(MESSAGE_TYPE),
    "images": pa.list_(IMAGE_TYPE),
}


@dataclass(frozen=True)
class ExportField:
    name: str
    type: FieldType
    meaning: str

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
        "anony", "bool", "the names were hidden until the vote (always true: battles are anonymous)"
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
    # Every value is always present in the JSON Lines export: nothing is nullable here either.
    return pa.schema([pa.field(f.name, f.arrow_type, nullable=False) for f in fields])
