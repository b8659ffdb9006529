"""The battles table: validation messages, FastChat files, pair counts and the vote-set hash."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from arena.ratings import (
    InvalidBattles,
    aggregate_battles,
    read_battles_file,
    validate_battles,
    vote_set_hash,
)

RECORDS = [
    {"model_a": "alpha", "model_b": "beta", "winner": "model_a", "tstamp": 1.0, "anony": True},
    {"model_a": "beta", "model_b": "alpha", "winner": "model_a", "tstamp": 2.0, "anony": True},
    {"model_a": "alpha", "model_b": "gamma", "winner": "tie", "tstamp": 3.0, "anony": True},
    {"model_a": "gamma", "model_b": "beta", "winner": "tie (bothbad)", "tstamp": 4.0},
    {"model_a": "gamma", "model_b": "alpha", "winner": "model_b", "tstamp": 5.0, "anony": False},
]


def test_unknown_winner_is_named_with_its_row() -> None:
    battles = pd.DataFrame(RECORDS).drop(columns="anony")
    battles.loc[3, "winner"] = "bothbad"
    with pytest.raises(InvalidBattles, match=r"got 'bothbad' in 1 battle\(s\) \(rows 3\)"):
        validate_battles(battles)


def test_missing_columns_are_listed() -> None:
    with pytest.raises(InvalidBattles, match="lacks column\\(s\\) winner"):
        validate_battles(pd.DataFrame({"model_a": ["a"], "model_b": ["b"]}))


def test_empty_model_and_self_battle_are_refused() -> None:
    with pytest.raises(InvalidBattles, match="model_b is empty in 1 battle"):
        validate_battles(pd.DataFrame({"model_a": ["a"], "model_b": [None], "winner": ["tie"]}))
    with pytest.raises(InvalidBattles, match="same model .* 'a'"):
        validate_battles(pd.DataFrame({"model_a": ["a"], "model_b": ["a"], "winner": ["tie"]}))
    with pytest.raises(InvalidBattles, match="no battles"):
        validate_battles(pd.DataFrame({"model_a": [], "model_b": [], "winner": []}))


def test_pair_counts_by_hand() -> None:
    counts = aggregate_battles(pd.DataFrame(RECORDS))
    assert counts.models == ("alpha", "beta", "gamma")
    pairs = {
        (counts.models[lo], counts.models[hi]): (wl, t, wh)
        for lo, hi, wl, t, wh in zip(
            counts.lo, counts.hi, counts.wins_lo, counts.ties, counts.wins_hi, strict=True
        )
    }
    # alpha-beta: alpha won once as side a, beta once as side a. alpha-gamma: a tie, and alpha
    # won from side b. beta-gamma: one tie (bothbad).
    assert pairs == {
        ("alpha", "beta"): (1, 0, 1),
        ("alpha", "gamma"): (1, 1, 0),
        ("beta", "gamma"): (0, 1, 0),
    }
    assert counts.votes().tolist() == [4, 3, 3]
    assert counts.n_battles == 5


@pytest.mark.parametrize("form", ["list", "lines", "csv", "parquet"])
def test_reads_fastchat_files_and_drops_named_battles(tmp_path: Path, form: str) -> None:
    path = tmp_path / ("battles.json" if form in ("list", "lines") else f"battles.{form}")
    if form == "parquet":
        pd.DataFrame(RECORDS).to_parquet(path)
    elif form == "list":
        path.write_text(json.dumps(RECORDS))
    elif form == "lines":
        path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    else:
        pd.DataFrame(RECORDS).to_csv(path, index=False)
    loaded = read_battles_file(path)
    assert loaded.dropped_non_anonymous == 1
    assert len(loaded.battles) == 4
    assert loaded.battles["winner"].tolist() == ["model_a", "model_a", "tie", "tie (bothbad)"]


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_conversations_become_text_columns(tmp_path: Path, suffix: str) -> None:
    record = {
        "model_a": "alpha",
        "model_b": "beta",
        "winner": "model_b",
        "tstamp": 1.0,
        "conversation_a": [
            {"role": "user", "content": "Write a haiku"},
            {"role": "assistant", "content": "Leaves fall"},
            {"role": "user", "content": "Another"},
            {"role": "assistant", "content": "Snow melts"},
        ],
        "conversation_b": [
            {"role": "user", "content": "Write a haiku"},
            {"role": "assistant", "content": "Rain"},
        ],
    }
    path = tmp_path / f"battles.{suffix}"
    if suffix == "parquet":
        pd.DataFrame([record]).to_parquet(path)
    else:
        path.write_text(json.dumps(record) + "\n")
    battles = read_battles_file(path).battles
    row = battles.iloc[0]
    assert (row["prompt"], row["answer_a"], row["answer_b"], row["turn"]) == (
        "Write a haiku",
        "Leaves fall\nSnow melts",
        "Rain",
        2,
    )


def test_bad_files_say_what_is_wrong(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(InvalidBattles, match="no such file"):
        read_battles_file(missing)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(RECORDS[0]) + "\n{not json\n")
    with pytest.raises(InvalidBattles, match="line 2"):
        read_battles_file(broken)
    bad_winner = tmp_path / "bad.json"
    bad_winner.write_text(json.dumps([{**RECORDS[0], "winner": "A"}]))
    with pytest.raises(InvalidBattles, match="winner must be one of"):
        read_battles_file(bad_winner)
    not_parquet = tmp_path / "battles.parquet"
    not_parquet.write_text(json.dumps(RECORDS))
    with pytest.raises(InvalidBattles, match="not a readable Parquet file"):
        read_battles_file(not_parquet)


def test_vote_set_hash_ignores_order_but_not_content() -> None:
    battles = pd.DataFrame(RECORDS)
    digest = vote_set_hash(battles)
    assert len(digest) == 64
    assert vote_set_hash(battles.iloc[::-1]) == digest
    changed = battles.copy()
    changed.loc[0, "winner"] = "tie"
    assert vote_set_hash(changed) != digest
    assert vote_set_hash(battles.iloc[:-1]) != digest
    assert vote_set_hash(pd.concat([battles, battles.iloc[:1]])) != digest
    later = battles.assign(tstamp=battles["tstamp"] + 1)
    assert vote_set_hash(later) != digest


def test_vote_set_hash_uses_vote_ids_when_present() -> None:
    battles = pd.DataFrame(RECORDS).assign(vote_id=[5, 3, 9, 1, 7])
    assert vote_set_hash(battles) == vote_set_hash(battles.iloc[[4, 2, 0, 1, 3]])
    assert vote_set_hash(battles) != vote_set_hash(battles.iloc[1:])
