"""The judged categories' filters over a battles table: hand-worked cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arena.ratings import InvalidBattles
from arena.ratings.categories import (
    HARD_MIN_CRITERIA,
    available_categories,
    category_mask,
    refusal_mask,
)


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model_a": ["a", "b", "a", "b", "a"],
            "model_b": ["b", "a", "b", "a", "b"],
            "winner": ["model_a"] * 5,
            "judged": [True, True, True, False, True],
            "judge_hard_score": [7, 6, 5, 7, 0],
            "judge_math": [True, False, False, True, False],
            "judge_instruction_following": [False, True, False, True, False],
            "judge_creative_writing": [False, False, True, True, False],
            "judge_refusal": [False, False, True, True, False],
        }
    )


def test_hard_is_at_least_six_criteria_of_labelled_battles() -> None:
    assert HARD_MIN_CRITERIA == 6
    assert category_mask(_table(), "hard").tolist() == [True, True, False, False, False]


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("math", [True, False, False, False, False]),
        ("instruction-following", [False, True, False, False, False]),
        ("creative-writing", [False, False, True, False, False]),
    ],
)
def test_flag_categories_keep_labelled_battles_only(category: str, expected: list[bool]) -> None:
    assert category_mask(_table(), category).tolist() == expected


def test_refusals_are_what_the_judge_said() -> None:
    assert refusal_mask(_table()).tolist() == [False, False, True, True, False]


def test_without_labels_the_judged_categories_name_the_missing_columns() -> None:
    plain = _table()[["model_a", "model_b", "winner"]]
    with pytest.raises(InvalidBattles, match="judge's labels"):
        category_mask(plain, "hard")
    with pytest.raises(InvalidBattles, match="judge_refusal"):
        refusal_mask(plain)
    assert "hard" not in available_categories(plain)


def test_available_categories_offer_the_judged_ones_that_have_battles() -> None:
    table = _table().assign(judge_math=np.zeros(5, dtype=bool))
    found = available_categories(table)
    assert {"hard", "instruction-following", "creative-writing"} <= set(found)
    assert "math" not in found
