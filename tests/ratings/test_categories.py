"""Category filters: code detection, language, long prompts, multi-turn, and their errors."""

from __future__ import annotations

import pandas as pd
import pytest

from arena.ratings import (
    InvalidBattles,
    available_categories,
    category_mask,
    compute_leaderboard,
    detect_language,
    filter_battles,
)
from arena.ratings.categories import estimate_tokens, looks_like_code

CODE = [
    "```python\nprint('hi')\n```",
    "def add(a, b):\n    return a + b",
    "#include <stdio.h>\nint main() { return 0; }",
    "SELECT name FROM users WHERE id = 3;",
    "const x = require('fs');\nx.readFileSync(path);",
    '<div class="box">hello</div>',
]
PROSE = [
    "What is the capital of France?",
    "Write a poem about the sea; make it rhyme.",
    "From the start, (I think) it was a good idea.",
    "Explain how vaccines work to a ten year old",
]


@pytest.mark.parametrize("text", CODE)
def test_code_is_seen(text: str) -> None:
    assert looks_like_code(text)


@pytest.mark.parametrize("text", PROSE)
def test_prose_is_not_code(text: str) -> None:
    assert not looks_like_code(text)


def test_language_detection_names_languages() -> None:
    assert detect_language("How do I bake a loaf of sourdough bread at home?") == "English"
    assert detect_language("请帮我写一封求职信，我想申请软件工程师的职位。") == "Chinese"
    assert detect_language("Quelle est la meilleure façon d'apprendre une langue étrangère ?") == (
        "French"
    )
    assert detect_language("12345 !!!") == "unknown"


def test_estimate_tokens() -> None:
    assert estimate_tokens("a" * 400) == 100
    assert estimate_tokens("你好世界") == 4


BATTLES = pd.DataFrame(
    {
        "model_a": ["A", "B", "A", "B", "A"],
        "model_b": ["B", "A", "B", "A", "B"],
        "winner": ["model_a", "model_b", "tie", "model_a", "model_b"],
        "turn": [1, 2, 1, 3, 1],
        "prompt": [
            "Tell me a joke about cats please",
            "def f(x):\n    return x",
            "Écris-moi un poème sur la mer et les bateaux",
            "word " * 450,
            "What is the tallest mountain in the world?",
        ],
        "answer_a": ["Why did the cat...", "ok", "La mer...", "ok", "`print(1)` is not a fence"],
        "answer_b": ["Cats!", "fine", "Voici", "ok", "```\nEverest\n```"],
    }
)


def test_masks() -> None:
    assert category_mask(BATTLES, "all").tolist() == [True] * 5
    assert category_mask(BATTLES, "coding").tolist() == [False, True, False, False, True]
    assert category_mask(BATTLES, "long").tolist() == [False, False, False, True, False]
    assert category_mask(BATTLES, "multi-turn").tolist() == [False, True, False, True, False]
    assert category_mask(BATTLES, "language:French").tolist() == [False, False, True, False, False]
    assert category_mask(BATTLES, "language:fr").tolist() == [False, False, True, False, False]
    assert category_mask(BATTLES, "language:ENGLISH").sum() >= 2


def test_language_column_wins_over_detection() -> None:
    tagged = BATTLES.assign(language=["German"] * 5)
    assert category_mask(tagged, "language:German").all()


def test_missing_columns_and_unknown_categories_are_explained() -> None:
    bare = BATTLES[["model_a", "model_b", "winner"]]
    with pytest.raises(InvalidBattles, match="needs the text"):
        category_mask(bare, "coding")
    with pytest.raises(InvalidBattles, match="turn column"):
        category_mask(bare, "multi-turn")
    with pytest.raises(InvalidBattles, match="language column or the prompt"):
        category_mask(bare, "language:English")
    with pytest.raises(InvalidBattles, match="unknown category 'maths'"):
        category_mask(BATTLES, "maths")
    assert available_categories(bare) == ["all"]


def test_available_categories_and_filtering() -> None:
    found = available_categories(BATTLES)
    assert found[:4] == ["all", "coding", "long", "multi-turn"]
    assert "language:French" in found
    assert len(filter_battles(BATTLES, "coding")) == 2


def test_leaderboard_of_a_category() -> None:
    board = compute_leaderboard(BATTLES, category="multi-turn", method="elo")
    assert board.n_battles == 2
    assert board.params["category"] == "multi-turn"
    with pytest.raises(InvalidBattles, match="has no battles"):
        compute_leaderboard(BATTLES, category="language:Japanese")


def test_stored_tags_are_used_instead_of_the_text() -> None:
    tagged = BATTLES[["model_a", "model_b", "winner"]].assign(
        tag_coding=[True, False, False, False, False],
        tag_long=[False, False, True, False, False],
        language=["English", "", None, "French", "English"],
    )
    assert category_mask(tagged, "coding").tolist() == [True, False, False, False, False]
    assert category_mask(tagged, "long").tolist() == [False, False, True, False, False]
    assert category_mask(tagged, "language:en").tolist() == [True, False, False, False, True]
    assert "language:unknown" not in available_categories(tagged)
