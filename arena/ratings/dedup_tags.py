"""FastChat's `dedup_tag`: whether a vote was held back beyond the duplicate-prompt limit, built
for the exports and read back from a battles file into the battles table's duplicate column.

The shape is that of FastChat's deduplication (fastchat/serve/monitor/deduplication.py):
{"high_freq": bool, "sampled": bool}; a prompt used more often than a cut is high_freq, a sample
of its battles stays `sampled: true`, the rest are `sampled: false` and its deduplicated
leaderboard leaves them out. Here the sample is the first ARENA_DUPLICATE_PROMPT_LIMIT uses of a
prompt, which count: a vote held back for nothing but a prompt past that limit when its battle
started is {"high_freq": true, "sampled": false}, every other exported vote {"high_freq": false,
"sampled": true}. Only `sampled` decides what a reader leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from arena.ratings.errors import InvalidBattles

DEDUP_TAG_COLUMN: Final = "dedup_tag"
HIGH_FREQ_KEY: Final = "high_freq"
SAMPLED_KEY: Final = "sampled"
# The CSV has no nested cells: dedup_tag flattened, in this order.
HIGH_FREQ_COLUMN: Final = "dedup_high_freq"
SAMPLED_COLUMN: Final = "dedup_sampled"
DEDUP_COLUMNS: Final[tuple[str, ...]] = (HIGH_FREQ_COLUMN, SAMPLED_COLUMN)
_TRUE_TEXTS: Final = frozenset({"true", "1"})
_FALSE_TEXTS: Final = frozenset({"false", "0"})

DedupTag = dict[str, bool]
BoolArray = npt.NDArray[np.bool_]


def dedup_tag(*, sampled: bool) -> DedupTag:
    """An exported vote's dedup_tag: not sampled is a vote held back beyond the limit."""
    return {HIGH_FREQ_KEY: not sampled, SAMPLED_KEY: sampled}


def _first_rows(battles: pd.DataFrame, bad: BoolArray, limit: int = 3) -> str:
    return ", ".join(str(label) for label in battles.index[bad][:limit].tolist())


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _flag(value: Any) -> bool | None:
    """A `sampled` value as a bool: true / false, 1 / 0, or their text; None if it is none of
    those. A missing one is sampled: nothing says the vote was held back."""
    if _missing(value):
        return True
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE_TEXTS | _FALSE_TEXTS:
        return value.strip().lower() in _TRUE_TEXTS
    return None


def _sampled_from_tags(battles: pd.DataFrame) -> BoolArray:
    """`sampled` of each dedup_tag: an object (JSON, JSON Lines; a struct read from Parquet), or
    null for a row without one (sampled)."""
    tags = battles[DEDUP_TAG_COLUMN].tolist()
    sampled = np.ones(len(tags), dtype=bool)
    bad = np.zeros(len(tags), dtype=bool)
    for i, tag in enumerate(tags):
        if isinstance(tag, Mapping):
            value = tag.get(SAMPLED_KEY)
            # Most files hold plain bools: settled without a call, a million rows
            flag = value if value is True or value is False else _flag(value)
        else:
            flag = None
        if flag is not None:
            sampled[i] = flag
        elif not _missing(tag):
            bad[i] = True
    if bad.any():
        shown = repr(tags[int(np.flatnonzero(bad)[0])])[:80]
        raise InvalidBattles(
            f"{DEDUP_TAG_COLUMN} must be an object like"
            f' {{"{HIGH_FREQ_KEY}": false, "{SAMPLED_KEY}": true}} whose {SAMPLED_KEY} is true or'
            f" false; got {shown} in {int(bad.sum())} battle(s) (rows {_first_rows(battles, bad)})."
        )
    return sampled


def _sampled_from_flat(battles: pd.DataFrame) -> BoolArray:
    """The CSV's dedup_sampled column: true / false or 1 / 0 (any case); empty is sampled."""
    values = battles[SAMPLED_COLUMN]
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.asarray(values.fillna(True).to_numpy(dtype=bool), dtype=bool)
    if pd.api.types.is_numeric_dtype(values.dtype):
        # pyarrow reads a column of 1 / 0 as numbers, as floats once a cell is empty
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        known = np.isnan(numbers) | (numbers == 0) | (numbers == 1)
        sampled = numbers != 0
    else:
        text = values.astype("string").str.strip().str.lower().fillna("")
        known = text.isin([*_TRUE_TEXTS, *_FALSE_TEXTS, ""]).to_numpy(dtype=bool)
        sampled = ~text.isin(list(_FALSE_TEXTS)).to_numpy(dtype=bool)
    if not known.all():
        bad = ~known
        shown = ", ".join(repr(v) for v in pd.unique(values[bad])[:5])
        raise InvalidBattles(
            f"{SAMPLED_COLUMN} must be true or false (or 1 or 0; empty: sampled); got {shown}"
            f" in {int(bad.sum())} battle(s) (rows {_first_rows(battles, bad)})."
        )
    return np.asarray(sampled, dtype=bool)


def sampled_rows(battles: pd.DataFrame) -> BoolArray | None:
    """Which battles dedup_tag (or the CSV's dedup_sampled) calls sampled; None when the table
    carries neither. InvalidBattles names the rows of a malformed one."""
    if DEDUP_TAG_COLUMN in battles.columns:
        return _sampled_from_tags(battles)
    if SAMPLED_COLUMN in battles.columns:
        return _sampled_from_flat(battles)
    return None
