"""FastChat's `category_tag`: a judge's labels of one battle as FastChat's clean-battle files hold
them, built from the labels and read back into the battles table's judge columns.

The shape is that of FastChat's category classifiers (fastchat/serve/monitor/classify/
category.py): {"criteria_v0.1": {the seven Arena-Hard criteria: bool}, "math_v0.1": {"math": bool},
"if_v0.1": {"if": bool}, "creative_writing_v0.1": {"creative_writing": bool}, "refusal_v0.2":
{"refusal": bool}}, null for a battle no judge labelled. FastChat's elo_analysis calls a prompt
hard when at least six criteria are true, as judged_mask does with judge_hard_score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from arena.ratings.categories import (
    CREATIVE_WRITING,
    INSTRUCTION_FOLLOWING,
    JUDGE_HARD_SCORE_COLUMN,
    JUDGE_REFUSAL_COLUMN,
    JUDGED_COLUMN,
    JUDGED_FLAG_COLUMNS,
    MATH,
)
from arena.ratings.views import REFUSAL_COLUMN

CATEGORY_TAG_COLUMN: Final = "category_tag"
CRITERIA_TAG: Final = "criteria_v0.1"
MATH_TAG: Final = "math_v0.1"
IF_TAG: Final = "if_v0.1"
CREATIVE_WRITING_TAG: Final = "creative_writing_v0.1"
REFUSAL_TAG: Final = "refusal_v0.2"
# Each single-flag tag with its key, and the battles-table column that key becomes.
FLAG_TAGS: Final[tuple[tuple[str, str, str], ...]] = (
    (MATH_TAG, "math", JUDGED_FLAG_COLUMNS[MATH]),
    (IF_TAG, "if", JUDGED_FLAG_COLUMNS[INSTRUCTION_FOLLOWING]),
    (CREATIVE_WRITING_TAG, "creative_writing", JUDGED_FLAG_COLUMNS[CREATIVE_WRITING]),
    (REFUSAL_TAG, "refusal", JUDGE_REFUSAL_COLUMN),
)
# The judge columns the rating code reads, in the order a flattened CSV carries them.
JUDGE_COLUMNS: Final[tuple[str, ...]] = (
    JUDGED_COLUMN,
    JUDGE_HARD_SCORE_COLUMN,
    *(column for _, _, column in FLAG_TAGS),
)

CategoryTag = dict[str, dict[str, bool]]


def category_tag(
    criteria: Mapping[str, bool],
    *,
    math: bool,
    instruction_following: bool,
    creative_writing: bool,
    refusal: bool,
) -> CategoryTag:
    """A labelled battle's category_tag; `criteria`: each Arena-Hard criterion, met or not."""
    flags = (math, instruction_following, creative_writing, refusal)
    return {
        CRITERIA_TAG: {name: bool(met) for name, met in criteria.items()},
        **{tag: {key: bool(flag)} for (tag, key, _), flag in zip(FLAG_TAGS, flags, strict=True)},
    }


def _true_criteria(tag: Mapping[str, Any]) -> int:
    criteria = tag.get(CRITERIA_TAG)
    if not isinstance(criteria, Mapping):
        return 0
    return sum(1 for met in criteria.values() if met is True)


def judge_columns_from_tags(tags: Sequence[Any]) -> dict[str, npt.NDArray[Any]]:
    """The judge columns (JUDGE_COLUMNS) of battles whose category_tag values are `tags`: a
    mapping for a labelled battle, None (or NaN, a missing key) for one not labelled.

    judged: a category_tag is there; judge_hard_score: how many criteria are true; the flags:
    true where the tag says so (false where it is missing or the battle is not labelled).
    Plus REFUSAL_COLUMN, the refusals view's marker, when some battle carries a refusal label
    (a file from before FastChat's refusal tag must not look as if nothing were refused).
    """
    n = len(tags)
    judged = np.zeros(n, dtype=bool)
    scores = np.zeros(n, dtype=np.int64)
    flags = np.zeros((len(FLAG_TAGS), n), dtype=bool)
    refusal_said = False
    for i, tag in enumerate(tags):
        if not isinstance(tag, Mapping):
            continue
        judged[i] = True
        scores[i] = _true_criteria(tag)
        for j, (name, key, _) in enumerate(FLAG_TAGS):
            inner = tag.get(name)
            if isinstance(inner, Mapping):
                flags[j, i] = inner.get(key) is True
                refusal_said = refusal_said or name == REFUSAL_TAG
    columns: dict[str, npt.NDArray[Any]] = {JUDGED_COLUMN: judged, JUDGE_HARD_SCORE_COLUMN: scores}
    for j, (_, _, column) in enumerate(FLAG_TAGS):
        columns[column] = flags[j]
    if refusal_said:
        columns[REFUSAL_COLUMN] = columns[JUDGE_REFUSAL_COLUMN]
    return columns


def _flags(values: pd.Series) -> npt.NDArray[np.bool_]:
    """A boolean column as read from a file: bools, 0 / 1, or text true / false; empty: false."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.asarray(values.fillna(False).to_numpy(dtype=bool), dtype=bool)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return np.asarray((values.fillna(0) != 0).to_numpy(dtype=bool), dtype=bool)
    text = values.astype("string").str.strip().str.lower()
    return np.asarray(text.isin(["true", "1"]).to_numpy(dtype=bool), dtype=bool)


def judge_columns_from_flat(battles: pd.DataFrame) -> dict[str, npt.NDArray[Any]]:
    """The judge columns of a table that carries them flat (a CSV export): each one present is
    normalised (an empty cell is false, or 0 for the hard score); REFUSAL_COLUMN as in
    judge_columns_from_tags, when a labelled battle has a refusal label."""
    columns: dict[str, npt.NDArray[Any]] = {}
    for column in JUDGE_COLUMNS:
        if column not in battles.columns:
            continue
        values = battles[column]
        if column == JUDGE_HARD_SCORE_COLUMN:
            scores = pd.to_numeric(values, errors="coerce").fillna(0)
            columns[column] = np.asarray(scores.to_numpy(dtype=np.float64), dtype=np.int64)
        else:
            columns[column] = _flags(values)
    if JUDGE_REFUSAL_COLUMN in battles.columns and REFUSAL_COLUMN not in battles.columns:
        said = battles[JUDGE_REFUSAL_COLUMN].notna().to_numpy(dtype=bool)
        if JUDGED_COLUMN in columns:
            said = said & columns[JUDGED_COLUMN]
        if bool(said.any()):
            columns[REFUSAL_COLUMN] = columns[JUDGE_REFUSAL_COLUMN]
    return columns


def with_judge_columns(battles: pd.DataFrame) -> pd.DataFrame:
    """The table with the judge columns the category filters and the refusals view read, from
    its category_tag column (JSON, JSON Lines, Parquet) or its flattened columns (CSV); columns
    the file already has are kept as they are, normalised. Unchanged when it has neither."""
    flat = judge_columns_from_flat(battles)
    found = dict(flat)
    if CATEGORY_TAG_COLUMN in battles.columns:
        from_tags = judge_columns_from_tags(battles[CATEGORY_TAG_COLUMN].tolist())
        found = {**from_tags, **flat}
    if not found:
        return battles
    return battles.assign(**found)
