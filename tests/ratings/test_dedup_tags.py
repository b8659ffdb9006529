"""FastChat's dedup_tag read back from JSON, JSON Lines, Parquet and the arena's flattened CSV:
which battles a reader leaves out by default, which it keeps and marks, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arena.ratings import InvalidBattles, read_battles_file
from arena.ratings.dedup_tags import sampled_rows
from arena.ratings.views import DUPLICATE_COLUMN, view_key, view_mask

PAIRS = [("alpha", "beta"), ("beta", "gamma"), ("gamma", "alpha"), ("alpha", "gamma")] * 2
# As FastChat's deduplication writes them: high-frequency prompts keep a sample.
TAGS: list[dict[str, bool] | None] = [
    {"high_freq": False, "sampled": True},
    {"high_freq": True, "sampled": True},
    {"high_freq": True, "sampled": False},
    {"high_freq": False, "sampled": True},
    {"high_freq": True, "sampled": False},
    None,
    {"high_freq": False, "sampled": True},
    {"high_freq": True, "sampled": False},
]
HELD_BACK = [2, 4, 7]


def _records(tags: list[Any], **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "model_a": a,
            "model_b": b,
            "winner": "model_a" if i % 3 else "tie",
            "tstamp": float(i),
            "vote_id": i,
            "anony": True,
            "dedup_tag": tag,
            **extra,
        }
        for i, ((a, b), tag) in enumerate(zip(PAIRS, tags, strict=True))
    ]


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    if path.suffix == ".parquet":
        # A struct column, as the arena's export and `datasets` write it
        pq.write_table(pa.Table.from_pylist(records), path)
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    elif path.suffix == ".csv":
        flat = pd.DataFrame(records).drop(columns="dedup_tag")
        flat["dedup_sampled"] = [
            "" if r["dedup_tag"] is None else str(r["dedup_tag"]["sampled"]).lower()
            for r in records
        ]
        flat.to_csv(path, index=False)
    else:
        path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("suffix", ["json", "jsonl", "parquet", "csv"])
def test_held_back_duplicates_are_left_out_by_default_and_counted(
    tmp_path: Path, suffix: str
) -> None:
    path = _write(tmp_path / f"battles.{suffix}", _records(TAGS))
    loaded = read_battles_file(path)
    assert loaded.dropped_duplicates == len(HELD_BACK)
    assert loaded.dropped_non_anonymous == 0
    kept = [i for i in range(len(TAGS)) if i not in HELD_BACK]
    assert loaded.battles["vote_id"].astype(int).tolist() == kept
    assert DUPLICATE_COLUMN not in loaded.battles.columns
    assert loaded.encoded.n_battles == len(kept)


@pytest.mark.parametrize("suffix", ["json", "jsonl", "parquet", "csv"])
def test_keep_duplicates_keeps_them_marked(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"battles.{suffix}", _records(TAGS))
    loaded = read_battles_file(path, keep_duplicates=True)
    assert loaded.dropped_duplicates == 0
    assert loaded.battles["vote_id"].astype(int).tolist() == list(range(len(TAGS)))
    assert loaded.battles[DUPLICATE_COLUMN].tolist() == [i in HELD_BACK for i in range(len(TAGS))]
    # The views leave them out again unless they keep duplicates.
    battles = loaded.battles
    assert view_mask(battles, view_key([])).tolist() == [i not in HELD_BACK for i in range(8)]
    assert view_mask(battles, view_key([], keep_duplicates=True)).all()
    ties = view_key(["ties"], keep_duplicates=True)
    assert view_mask(battles, ties).tolist() == (battles["winner"] != "tie").tolist()


def test_a_named_duplicate_counts_as_named(tmp_path: Path) -> None:
    records = _records(TAGS)
    records[2]["anony"] = False  # held back too: FastChat leaves it out for being named
    records[3]["anony"] = False
    path = _write(tmp_path / "battles.jsonl", records)
    loaded = read_battles_file(path)
    assert (loaded.dropped_non_anonymous, loaded.dropped_duplicates) == (2, 2)
    kept = read_battles_file(path, keep_duplicates=True)
    assert (kept.dropped_non_anonymous, kept.dropped_duplicates) == (2, 0)
    assert kept.battles["vote_id"].astype(int).tolist() == [0, 1, 4, 5, 6, 7]


@pytest.mark.parametrize("suffix", ["jsonl", "parquet", "csv"])
def test_a_file_without_dedup_tag_is_read_as_before(tmp_path: Path, suffix: str) -> None:
    records = [{k: v for k, v in r.items() if k != "dedup_tag"} for r in _records(TAGS)]
    path = tmp_path / f"battles.{suffix}"
    if suffix == "parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    elif suffix == "csv":
        pd.DataFrame(records).to_csv(path, index=False)
    else:
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    for keep in (False, True):
        loaded = read_battles_file(path, keep_duplicates=keep)
        assert loaded.dropped_duplicates == 0 and len(loaded.battles) == len(records)
        assert DUPLICATE_COLUMN not in loaded.battles.columns


@pytest.mark.parametrize(
    ("cells", "sampled"),
    [
        (["true", "false", "", "TRUE", "False"], [True, False, True, True, False]),
        (["1", "0", "", "1", "0"], [True, False, True, True, False]),
        (["1", "0", "1", "1", "0"], [True, False, True, True, False]),
        (["True", "False", "True", "True", "False"], [True, False, True, True, False]),
        (["", "", "", "", ""], [True] * 5),
    ],
)
def test_the_csv_column_takes_true_false_1_0_and_empty(
    tmp_path: Path, cells: list[str], sampled: list[bool]
) -> None:
    rows = ["model_a,model_b,winner,dedup_high_freq,dedup_sampled"]
    rows += [f"m{i},m{i + 1},model_a,,{cell}" for i, cell in enumerate(cells)]
    path = tmp_path / "battles.csv"
    path.write_text("\n".join(rows) + "\n")
    loaded = read_battles_file(path, keep_duplicates=True)
    assert loaded.battles[DUPLICATE_COLUMN].tolist() == [not s for s in sampled]


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("sampled", "got 'sampled' in 1 battle(s) (rows 3)"),
        (True, "got True in 1 battle(s) (rows 3)"),
        ([True], "got [True] in 1 battle(s) (rows 3)"),
        ({"high_freq": True, "sampled": "maybe"}, "'sampled': 'maybe'} in 1 battle(s) (rows 3)"),
        ({"sampled": 2}, "whose sampled is true or false"),
    ],
)
def test_a_malformed_dedup_tag_is_named_with_its_row(
    tmp_path: Path, tag: Any, message: str
) -> None:
    records = _records(TAGS)
    records[3]["dedup_tag"] = tag
    path = _write(tmp_path / "battles.jsonl", records)
    with pytest.raises(InvalidBattles, match="dedup_tag must be an object") as error:
        read_battles_file(path)
    assert message in str(error.value)


def test_a_malformed_csv_cell_is_named_with_its_row(tmp_path: Path) -> None:
    path = tmp_path / "battles.csv"
    path.write_text(
        "model_a,model_b,winner,dedup_sampled\na,b,tie,true\nb,c,tie,perhaps\nc,a,tie,2\n"
    )
    with pytest.raises(InvalidBattles, match=r"dedup_sampled must be true or false") as error:
        read_battles_file(path)
    assert "'perhaps', '2' in 2 battle(s) (rows 1, 2)" in str(error.value)


_SAMPLED = st.sampled_from([True, False, 1, 0, "true", "False", " 1 ", "0", None])
_JUNK = st.one_of(
    st.text(max_size=8),
    st.integers(),
    st.floats(allow_nan=True),
    st.lists(st.booleans(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.booleans(), max_size=2),
)


def _expected(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return True if value is None else bool(value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.fixed_dictionaries({"sampled": _SAMPLED})), max_size=30))
def test_valid_tags_give_their_sampled_value(tags: list[dict[str, Any] | None]) -> None:
    found = sampled_rows(pd.DataFrame({"dedup_tag": pd.Series(tags, dtype=object)}))
    assert found is not None
    assert found.tolist() == [True if t is None else _expected(t["sampled"]) for t in tags]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(_JUNK, st.fixed_dictionaries({"sampled": _JUNK}), st.none()),
        min_size=1,
        max_size=30,
    )
)
def test_any_tag_is_read_or_refused_with_a_message(tags: list[Any]) -> None:
    frame = pd.DataFrame({"dedup_tag": pd.Series(tags, dtype=object)})
    try:
        found = sampled_rows(frame)
    except InvalidBattles as exc:
        assert "dedup_tag must be an object" in str(exc) and "rows " in str(exc)
    else:
        assert found is not None and found.dtype == np.bool_ and len(found) == len(tags)
