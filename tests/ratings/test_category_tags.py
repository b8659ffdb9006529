"""FastChat's category_tag read back into the judge columns: JSON, JSON Lines, Parquet and the
arena's flattened CSV, and what the judged categories and the refusals view make of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from arena.ratings import InvalidBattles, read_battles_file
from arena.ratings.categories import category_mask
from arena.ratings.category_tags import category_tag, judge_columns_from_tags
from arena.ratings.views import view_mask

CRITERIA = (
    "specificity",
    "domain_knowledge",
    "complexity",
    "problem_solving",
    "creativity",
    "technical_accuracy",
    "real_world",
)


def _criteria(met: int) -> dict[str, bool]:
    return {name: i < met for i, name in enumerate(CRITERIA)}


# As FastChat's clean-battle files hold them: its tag order, the `score` keys of if_v0.1 and
# creative_writing_v0.1, and files labelled before refusal_v0.2 existed.
TAGS: list[dict[str, Any] | None] = [
    {
        "criteria_v0.1": _criteria(7),
        "if_v0.1": {"if": False, "score": 1},
        "math_v0.1": {"math": True},
        "creative_writing_v0.1": {"creative_writing": False, "score": "no"},
        "refusal_v0.2": {"refusal": True},
    },
    {
        "criteria_v0.1": _criteria(6),
        "if_v0.1": {"if": True, "score": 4},
        "math_v0.1": {"math": False},
        "creative_writing_v0.1": {"creative_writing": True, "score": "yes"},
        "refusal_v0.2": {"refusal": False},
    },
    {
        "criteria_v0.1": _criteria(5),
        "if_v0.1": {"if": False, "score": 0},
        "math_v0.1": {"math": True},
        "creative_writing_v0.1": {"creative_writing": False, "score": "no"},
        "refusal_v0.2": {"refusal": False},
    },
    None,
]


def _records(tags: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    pairs = [("alpha", "beta"), ("beta", "gamma"), ("gamma", "alpha"), ("alpha", "gamma")]
    return [
        {
            "model_a": a,
            "model_b": b,
            "winner": "model_a",
            "tstamp": float(i),
            "anony": True,
            "category_tag": tag,
        }
        for i, ((a, b), tag) in enumerate(zip(pairs, tags, strict=True))
    ]


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    if path.suffix == ".parquet":
        pd.DataFrame(records).to_parquet(path)
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    else:
        path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("suffix", ["json", "jsonl", "parquet"])
def test_fastchat_category_tags_become_the_judge_columns(tmp_path: Path, suffix: str) -> None:
    battles = read_battles_file(_write(tmp_path / f"battles.{suffix}", _records(TAGS))).battles
    assert battles["judged"].tolist() == [True, True, True, False]
    assert battles["judge_hard_score"].tolist() == [7, 6, 5, 0]
    assert battles["judge_math"].tolist() == [True, False, True, False]
    assert battles["judge_instruction_following"].tolist() == [False, True, False, False]
    assert battles["judge_creative_writing"].tolist() == [False, True, False, False]
    assert battles["judge_refusal"].tolist() == [True, False, False, False]
    # FastChat's hard prompts: at least 6 of the 7 criteria; the rest per flag.
    assert category_mask(battles, "hard").tolist() == [True, True, False, False]
    assert category_mask(battles, "math").tolist() == [True, False, True, False]
    assert category_mask(battles, "instruction-following").tolist() == [False, True, False, False]
    assert view_mask(battles, "refusals").tolist() == [False, True, True, True]


def test_a_battle_without_a_key_is_not_labelled(tmp_path: Path) -> None:
    records = _records(TAGS)
    del records[3]["category_tag"]
    battles = read_battles_file(_write(tmp_path / "battles.jsonl", records)).battles
    assert battles["judged"].tolist() == [True, True, True, False]


def test_files_without_refusal_labels_cannot_leave_refusals_out(tmp_path: Path) -> None:
    older = [
        None if t is None else {k: v for k, v in t.items() if k != "refusal_v0.2"} for t in TAGS
    ]
    battles = read_battles_file(_write(tmp_path / "old.json", _records(older))).battles
    assert category_mask(battles, "hard").tolist() == [True, True, False, False]
    assert "refusal" not in battles.columns
    with pytest.raises(InvalidBattles, match="refusal_v0.2"):
        view_mask(battles, "refusals")


def test_files_without_any_tag_name_what_the_judged_categories_need(tmp_path: Path) -> None:
    records = [{k: v for k, v in r.items() if k != "category_tag"} for r in _records(TAGS)]
    battles = read_battles_file(_write(tmp_path / "plain.json", records)).battles
    with pytest.raises(InvalidBattles, match="judge's labels"):
        category_mask(battles, "math")


def test_the_flattened_csv_columns_read_back(tmp_path: Path) -> None:
    # As /battles.csv writes them: labels empty where no judge labelled the battle.
    path = tmp_path / "battles.csv"
    path.write_text(
        "model_a,model_b,winner,tstamp,prompt_tokens,judged,judge_hard_score,judge_math,"
        "judge_instruction_following,judge_creative_writing,judge_refusal,category_judge\r\n"
        "alpha,beta,model_a,1.0,12,True,7,True,False,False,True,judge / prompt v1\r\n"
        "beta,gamma,tie,2.0,3,True,6,False,True,False,False,'=judge / prompt v1\r\n"
        "gamma,alpha,model_b,3.0,,False,,,,,,\r\n"
    )
    battles = read_battles_file(path).battles
    assert battles["judged"].tolist() == [True, True, False]
    assert battles["judge_hard_score"].tolist() == [7, 6, 0]
    assert battles["judge_math"].tolist() == [True, False, False]
    assert battles["refusal"].tolist() == [True, False, False]
    assert np.isnan(battles["prompt_tokens"].iloc[2])
    assert category_mask(battles, "hard").tolist() == [True, True, False]
    # ties and refusals out, and a first prompt under 5 tokens; one never measured stays in
    assert view_mask(battles, "ties+short+refusals").tolist() == [False, False, True]


def test_every_tag_the_arena_writes_reads_back() -> None:
    tags = [
        category_tag(
            _criteria(met),
            math=bool(met & 1),
            instruction_following=bool(met & 2),
            creative_writing=bool(met & 4),
            refusal=met % 3 == 0,
        )
        for met in range(8)
    ]
    columns = judge_columns_from_tags([*tags, None])
    assert columns["judge_hard_score"].tolist() == [*range(8), 0]
    assert columns["judge_math"].tolist() == [bool(m & 1) for m in range(8)] + [False]
    assert columns["judge_refusal"].tolist() == [m % 3 == 0 for m in range(8)] + [False]
    assert columns["refusal"].tolist() == columns["judge_refusal"].tolist()
