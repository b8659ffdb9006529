"""Parquet exports and their dataset cards through real HTTP, checked against the JSON Lines."""

from __future__ import annotations

import io
import json
import math
import secrets
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import insert, select

from arena.db import make_sync_engine
from arena.leaderboard.downloads import (
    BATTLE_COLUMNS,
    ExportedVote,
    ReleasedTexts,
    battle_record,
)
from arena.leaderboard.export_description import REDACTION_STEPS
from arena.leaderboard.export_fields import PREFERENCE_FIELDS, battle_fields
from arena.leaderboard.parquet_export import ROW_GROUP_ROWS
from arena.models import Battle, BattleStatus, Model, Vote
from arena.ratings.battles import vote_set_hash
from tests.conftest import Arena
from tests.leaderboard.conftest import CODE, START, SeedVote, add_models, recompute, seed_votes

PARQUET = "application/vnd.apache.parquet"


def _jsonl(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _parquet(response: httpx.Response) -> pa.Table:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == PARQUET
    return pq.read_table(io.BytesIO(response.content))


def _card(response: httpx.Response) -> tuple[dict[str, Any], str]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    _, front, body = response.text.split("---\n", 2)
    meta: dict[str, Any] = yaml.safe_load(front)
    return meta, body


def _same_rows(response: httpx.Response, records: list[dict[str, Any]]) -> pa.Table:
    """Row for row, value for value, columns in the order of the JSON keys; read with pyarrow and
    with pandas."""
    table = _parquet(response)
    assert records and table.column_names == list(records[0])
    assert table.to_pylist() == records
    frame = pd.read_parquet(io.BytesIO(response.content))
    assert list(frame.columns) == table.column_names and len(frame) == len(records)
    for column in frame.columns:
        values = frame[column].tolist()
        field_type = table.schema.field(column).type
        if isinstance(field_type, pa.ListType) and isinstance(values[0], Iterable):
            # pandas gives a list column as arrays of dicts
            values = [[dict(m) for m in v] for v in values]
        assert _nulls_as_none(values) == [r[column] for r in records], column
    return table


def _nulls_as_none(values: list[Any]) -> list[Any]:
    """pandas reads a null string as NaN; JSON has no NaN, so a NaN here is a null there."""
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def test_battles_parquet_is_the_jsonl_row_for_row(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        parquet = client.get("/battles.parquet")
        records = _jsonl(client.get("/battles.jsonl"))
    assert parquet.headers["content-disposition"] == 'attachment; filename="battles.parquet"'
    assert "content-length" not in parquet.headers  # streamed
    assert parquet.headers["x-arena-conversations-released"] == "false"
    table = _parquet(parquet)
    assert len(records) == table.num_rows == 402
    assert table.column_names == list(BATTLE_COLUMNS) == list(records[0])
    assert table.to_pylist() == records
    # pandas reads the file itself (not a copy) with the types the schema names.
    frame = pd.read_parquet(io.BytesIO(parquet.content))
    assert list(frame.columns) == list(BATTLE_COLUMNS)
    assert [
        dict(zip(r, _nulls_as_none(list(r.values())), strict=True))
        for r in frame.to_dict("records")
    ] == records
    assert str(frame["tstamp"].dtype) == "float64" and str(frame["vote_id"].dtype) == "int64"
    assert str(frame["anony"].dtype) == "bool" and str(frame["tag_coding"].dtype) == "bool"
    schema = table.schema
    assert schema.field("model_a").type == pa.string()
    assert schema.field("turn").type == pa.int64()
    # Null only where a value does not exist: a battle erased before its style or its prompt's
    # length was worked out, a battle no judge labelled (here: no judge at all).
    assert [f.name for f in schema if f.nullable] == [
        "conv_metadata", "prompt_tokens", "category_tag", "category_judge"
    ]  # fmt: skip
    assert schema.field("prompt_tokens").type == pa.int64()
    assert all(r["category_tag"] is None and r["category_judge"] is None for r in records)
    assert all(isinstance(r["prompt_tokens"], int) for r in records)
    assert all(isinstance(r["conv_metadata"]["header_count_a"], dict) for r in records)


def test_snapshot_parquet_and_card_hold_exactly_its_votes(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        board = client.get("/api/leaderboard").json()
        snapshot = board["snapshot"]
        seed_votes(
            rated_arena.settings.database_url,
            [SeedVote("alpha-large", "beta-chat", "tie")],
            start=datetime.now(UTC) + timedelta(seconds=5),
        )
        params = {"snapshot": snapshot["id"]}
        parquet = client.get("/battles.parquet", params=params)
        records = _jsonl(client.get("/battles.jsonl", params=params))
        meta, body = _card(client.get("/battles.card.md", params=params))
        full_meta, full_body = _card(client.get("/battles.card.md"))
        gone = client.get("/battles.card.md", params={"snapshot": 999_999})
    assert parquet.headers["content-disposition"] == (
        f'attachment; filename="battles-snapshot-{snapshot["id"]}.parquet"'
    )
    table = _parquet(parquet)
    assert table.to_pylist() == records and len(records) == 400 == snapshot["n_votes"]
    # The card's hash is the leaderboard's, and it is the hash of the rows in the file.
    arena_meta = meta["arena"]
    hash_of_file = vote_set_hash(pd.read_parquet(io.BytesIO(parquet.content)))
    assert arena_meta["leaderboard"]["vote_set_hash"] == snapshot["vote_set_hash"] == hash_of_file
    assert arena_meta["leaderboard"]["same_votes"] is True
    assert f"Vote-set hash: `{hash_of_file}`" in body
    assert "reproduces that table" in body
    assert arena_meta["rows"] == 400 and "newcomer" not in body.split("## Counts")[1]
    assert meta["configs"][0]["data_files"][0]["path"] == (
        f"battles-snapshot-{snapshot['id']}.parquet"
    )
    # Without a snapshot: every counted vote, named against the latest leaderboard, not matched.
    assert full_meta["arena"]["rows"] == 403
    assert full_meta["arena"]["leaderboard"]["vote_set_hash"] == snapshot["vote_set_hash"]
    assert full_meta["arena"]["leaderboard"]["same_votes"] is False
    assert f"?snapshot={snapshot['id']}" in full_body
    assert gone.status_code == 404 and "thinned out" in gone.json()["detail"]


def test_battles_card_names_fields_period_filters_counts_and_licence(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        records = _jsonl(client.get("/battles.jsonl"))
        response = client.get("/battles.card.md")
    meta, body = _card(response)
    assert response.headers["content-disposition"] == 'attachment; filename="battles.card.md"'
    # Hugging Face's keys, then ours.
    assert meta["pretty_name"] == "Arena battles"
    assert meta["license"] == "cc-by-4.0"
    assert meta["size_categories"] == ["n<1K"]
    assert meta["dataset_info"]["splits"] == [{"name": "train", "num_examples": 402}]
    features = meta["dataset_info"]["features"]
    assert [f["name"] for f in features] == list(BATTLE_COLUMNS)
    by_name = {f["name"]: f for f in features}
    assert by_name["tstamp"]["dtype"] == "float64"
    # conv_metadata as Hugging Face's nested struct feature, FastChat's names at each level
    style = {f["name"]: f for f in by_name["conv_metadata"]["struct"]}
    assert style["sum_assistant_a_tokens"] == {"name": "sum_assistant_a_tokens", "dtype": "int64"}
    assert [f["name"] for f in style["header_count_b"]["struct"]] == [f"h{i}" for i in range(1, 7)]
    assert [f["name"] for f in style["bold_count_a"]["struct"]] == ["**", "__"]
    # category_tag likewise, in FastChat's names: a struct per tag, booleans inside
    tags = {f["name"]: f["struct"] for f in by_name["category_tag"]["struct"]}
    assert list(tags) == [
        "criteria_v0.1", "math_v0.1", "if_v0.1", "creative_writing_v0.1", "refusal_v0.2"
    ]  # fmt: skip
    assert len(tags["criteria_v0.1"]) == 7 and tags["if_v0.1"] == [{"name": "if", "dtype": "bool"}]
    # dedup_tag too: FastChat's {high_freq, sampled}
    assert by_name["dedup_tag"]["struct"] == [
        {"name": "high_freq", "dtype": "bool"},
        {"name": "sampled", "dtype": "bool"},
    ]
    arena_meta = meta["arena"]
    assert arena_meta["rows"] == len(records) == 402
    assert (
        arena_meta["models"]
        == len({r["model_a"] for r in records} | {r["model_b"] for r in records})
        == 5
    )
    assert arena_meta["votes_by_winner"] == dict(Counter(r["winner"] for r in records))
    stamps = [r["tstamp"] for r in records]
    first = datetime.fromtimestamp(min(stamps), UTC).isoformat()
    last = datetime.fromtimestamp(max(stamps), UTC).isoformat()
    assert arena_meta["collection_period"] == {"first": first, "last": last}
    assert f"Votes cast from {first} to {last} (UTC)." in body
    assert arena_meta["license"] == "CC-BY-4.0"
    assert arena_meta["license_chosen_by_operator"] is False
    assert "the operator has not set ARENA_DATA_LICENSE" in body
    assert arena_meta["conversations_released"] is False
    # Redaction is said honestly, from the one place that lists the steps.
    assert arena_meta["redaction"] == []
    assert "Redaction applied: none (the export holds no prompts or answers)." in body
    # Counted votes, and the held-back votes a rater can tell apart (anony, dedup_tag)
    assert any(f.startswith("Counted votes, and two kinds") for f in arena_meta["filters"])
    assert arena_meta["held_back_duplicates"] == 0
    assert "answer named its own model" in body
    # Every field is in the table with its meaning.
    labels = {
        "conv_metadata": "struct of counts (int64), or null",
        "category_tag": "struct of structs of bool, or null",
        "prompt_tokens": "int64, or null",
        "category_judge": "string, or null",
        "dedup_tag": "struct of bool",
    }
    for field in battle_fields(False):
        assert f"| `{field.name}` | {labels.get(field.name, field.type)} | " in body
    assert "seconds since 1970-01-01T00:00:00Z (UTC)" in body
    for name in ("alpha-large", "beta-chat", "gamma-7b", "delta-mini", "newcomer"):
        appearances = sum((r["model_a"] == name) + (r["model_b"] == name) for r in records)
        assert f"`{name}` {appearances:,}" in body


def test_released_conversations_and_preferences_as_parquet(
    arena_factory: Callable[..., Arena],
) -> None:
    arena = arena_factory(
        release_conversations=True,
        data_license="CC-BY-SA-4.0",
        recompute_every_votes=10**9,
        recompute_every_seconds=3600.0,
    )
    add_models(arena)
    seed_votes(
        arena.settings.database_url,
        [
            SeedVote("alpha-large", "beta-chat", "model_a", answer_a="Paris.", answer_b="Lyon."),
            SeedVote("gamma-7b", "alpha-large", "model_b", prompt=CODE, turns=2),
            SeedVote("beta-chat", "gamma-7b", "tie", prompt='Ünïcode "quotes" and 中文 | pipe'),
            SeedVote("delta-mini", "gamma-7b", "tie (bothbad)"),
            SeedVote("beta-chat", "delta-mini", "model_b", counted=False),
        ],
    )
    recompute(arena)
    with arena.client() as client:
        battles_response = client.get("/battles.parquet")
        battle_records = _jsonl(client.get("/battles.jsonl"))
        prefs_response = client.get("/preferences.parquet")
        pairs = _jsonl(client.get("/preferences.jsonl"))
        battles_meta, battles_body = _card(client.get("/battles.card.md"))
        prefs_meta, prefs_body = _card(client.get("/preferences.card.md"))
    assert len(battle_records) == 4 and len(pairs) == 2
    battles = _same_rows(battles_response, battle_records)
    assert battles.column_names == [
        *BATTLE_COLUMNS,
        "conversation_a",
        "conversation_b",
        "text_status",
        "images",
    ]
    assert battles.schema.field("conversation_a").type == pa.list_(
        pa.struct([("role", pa.string()), ("content", pa.string())])
    )
    assert prefs_response.headers["content-disposition"] == (
        'attachment; filename="preferences.parquet"'
    )
    preferences = _same_rows(prefs_response, pairs)
    assert preferences.column_names == ["prompt", "chosen", "rejected"]
    # The cards: the operator's licence, texts released, the release rule and the redactor.
    for meta, body in ((battles_meta, battles_body), (prefs_meta, prefs_body)):
        assert meta["license"] == "cc-by-sa-4.0"
        assert meta["arena"]["license_chosen_by_operator"] is True
        assert "chosen by the operator (ARENA_DATA_LICENSE)" in body
        assert meta["arena"]["conversations_released"] is True
        assert "Redaction applied: Texts only from battles whose visitor was shown" in body
        assert "[EMAIL], [PHONE], [IP], [CARD], [IBAN], [NATIONAL_ID], [ADDRESS]" in body
        assert meta["arena"]["redaction"] == list(REDACTION_STEPS)
    assert [f["name"] for f in battles_meta["dataset_info"]["features"]][-2:] == [
        "text_status",
        "images",
    ]
    assert prefs_meta["pretty_name"] == "Arena preference pairs"
    assert [f["name"] for f in prefs_meta["dataset_info"]["features"]] == [
        f.name for f in PREFERENCE_FIELDS
    ]
    assert prefs_meta["arena"]["rows"] == 2
    assert prefs_meta["arena"]["votes_by_winner"] == {
        "model_a": 1,
        "model_b": 1,
        "tie": 0,
        "tie (bothbad)": 0,
    }
    assert "Decisive votes only" in prefs_body
    assert any(f.startswith("Counted votes only.") for f in prefs_meta["arena"]["filters"])
    assert prefs_meta["configs"][0]["data_files"][0]["path"] == "preferences.parquet"


def test_preferences_parquet_and_card_need_released_conversations(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        for path in ("/preferences.parquet", "/preferences.card.md"):
            response = client.get(path)
            assert response.status_code == 404
            assert "ARENA_RELEASE_CONVERSATIONS=true" in response.json()["detail"]


def test_empty_export_is_a_valid_parquet_file_with_the_schema(quiet_arena: Arena) -> None:
    add_models(quiet_arena)
    with quiet_arena.client() as client:
        response = client.get("/battles.parquet")
        meta, body = _card(client.get("/battles.card.md"))
        bad = client.get("/battles.parquet", params={"snapshot": "0"})
    table = _parquet(response)
    assert table.num_rows == 0
    assert table.schema.equals(
        pa.schema([pa.field(f.name, f.arrow_type, f.nullable) for f in battle_fields(False)])
    )
    frame = pd.read_parquet(io.BytesIO(response.content))
    assert list(frame.columns) == list(BATTLE_COLUMNS) and len(frame) == 0
    assert meta["arena"]["rows"] == 0 and meta["arena"]["leaderboard"] is None
    assert meta["arena"]["collection_period"] == {"first": None, "last": None}
    assert "No votes yet." in body and "No leaderboard has been computed yet" in body
    assert bad.status_code == 422 and "snapshot" in bad.text


def _seed_bare_votes(database_url: str, n: int) -> None:
    """n counted votes between two models, without messages (the battles export reads none)."""
    engine = make_sync_engine(database_url)
    try:
        with engine.begin() as conn:
            a, b = (int(i) for i in conn.scalars(select(Model.id).order_by(Model.id).limit(2)))
            for start in range(0, n, 20_000):
                ids = [secrets.token_urlsafe(12) for _ in range(start, min(n, start + 20_000))]
                at = [START + timedelta(milliseconds=start + k) for k in range(len(ids))]
                conn.execute(
                    insert(Battle),
                    [
                        {
                            "id": battle_id,
                            "model_a_id": a,
                            "model_b_id": b,
                            "session_hash": "session-hash-bulk",
                            "ip_hash": "ip-hash-bulk",
                            "status": BattleStatus.voted,
                            "turns": 1,
                            "language": "English",
                            "category_tags": [],
                            "created_at": moment,
                        }
                        for battle_id, moment in zip(ids, at, strict=True)
                    ],
                )
                conn.execute(
                    insert(Vote),
                    [
                        {
                            "battle_id": battle_id,
                            "winner": "model_a" if (start + k) % 3 else "model_b",
                            "session_hash": "session-hash-bulk",
                            "ip_hash": "ip-hash-bulk",
                            "created_at": moment,
                            "counted": True,
                            "flags": [],
                        }
                        for k, (battle_id, moment) in enumerate(zip(ids, at, strict=True))
                    ],
                )
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_large_export_streams_a_row_group_at_a_time(quiet_arena: Arena) -> None:
    add_models(quiet_arena)
    n = ROW_GROUP_ROWS + 6_000
    _seed_bare_votes(quiet_arena.settings.database_url, n)
    chunks: list[bytes] = []
    with quiet_arena.client() as client, client.stream("GET", "/battles.parquet") as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        chunks.extend(response.iter_raw())
    data = b"".join(chunks)
    # The first row group left the server before the rest was written: a chunk per row group.
    assert len(chunks) >= 2 and len(chunks[0]) < len(data)
    file = pq.ParquetFile(io.BytesIO(data))
    assert file.metadata.num_rows == n
    assert [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)] == [
        ROW_GROUP_ROWS,
        6_000,
    ]
    column = file.read(columns=["vote_id", "winner"])
    assert column.num_rows == n
    assert Counter(column.column("winner").to_pylist())["model_b"] == (n + 2) // 3


_MEMORY_PROBE = textwrap.dedent(
    """
    import asyncio, resource, sys
    from arena.leaderboard.downloads import ExportedVote, battle_record
    from arena.leaderboard.export_fields import battle_fields
    from arena.leaderboard.parquet_export import parquet_chunks

    rows = int(sys.argv[1])

    async def records():
        for start in range(0, rows, 1000):
            yield [
                battle_record(
                    ExportedVote(i, f"b{i}", f"model-{i % 40}", f"model-{(i + 7) % 40}",
                                 "model_a", f"judge_{i % 5000:016x}", 1 + i % 3, "English",
                                 1.7e9 + i / 1000, i % 2 == 0, i % 5 == 0),
                    None,
                )
                for i in range(start, min(rows, start + 1000))
            ]

    async def main():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        size = 0
        async for chunk in parquet_chunks(records(), battle_fields(False)):
            size += len(chunk)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(after - before, size)

    asyncio.run(main())
    """
)


def _peak_growth_kib(rows: int) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(rows)],
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    )
    growth, size = done.stdout.split()
    return int(growth), int(size)


@pytest.mark.slow
def test_parquet_writer_memory_does_not_grow_with_the_rows() -> None:
    small, small_size = _peak_growth_kib(100_000)
    large, large_size = _peak_growth_kib(1_000_000)
    # Ten times the rows make a file about ten times larger, but the writer holds one row
    # group at a time: its peak memory stays where it was (holding every row would take
    # hundreds of megabytes more).
    assert large_size > 8 * small_size
    assert large < small + 40 * 1024, (small, large)


def test_leaderboard_parquet_is_the_json_table(rated_arena: Arena) -> None:
    params = {"category": "coding"}
    with rated_arena.client() as client:
        response = client.get("/leaderboard.parquet", params=params)
        body = client.get("/api/leaderboard", params=params).json()
        csv = pd.read_csv(io.StringIO(client.get("/leaderboard.csv", params=params).text))
    assert response.headers["content-disposition"] == (
        'attachment; filename="leaderboard-bt-coding.parquet"'
    )
    table = _parquet(response)
    assert table.column_names == list(csv.columns)
    snapshot = body["snapshot"]
    assert response.headers["x-arena-vote-set-hash"] == snapshot["vote_set_hash"]
    footer = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert footer["arena:vote-set-hash"] == snapshot["vote_set_hash"]
    assert footer["arena:snapshot-id"] == str(snapshot["id"])
    assert footer["arena:category"] == "coding"
    rows = table.to_pylist()
    assert len(rows) == len(body["models"]) == 4
    for row, expected in zip(rows, body["models"], strict=True):
        for key in ("rank", "model", "rating", "ci_lower", "ci_upper", "votes", "win_rate"):
            assert row[key] == expected[key], key
        assert row["status"] == expected["status"] == "active"
        assert row["activated_at"] == datetime.fromisoformat(
            expected["activated_at"].replace("Z", "+00:00")
        )
        assert row["retired_at"] is None
    frame = pd.read_parquet(io.BytesIO(response.content))
    assert list(frame["model"]) == list(csv["model"])
    assert str(frame["activated_at"].dtype).startswith("datetime64") and "UTC" in str(
        frame["activated_at"].dtype
    )


def test_leaderboard_parquet_before_any_snapshot_is_empty(quiet_arena: Arena) -> None:
    with quiet_arena.client() as client:
        response = client.get("/leaderboard.parquet")
    table = _parquet(response)
    assert table.num_rows == 0 and "rating" in table.column_names
    assert table.schema.metadata[b"arena:snapshot"] == b"none"


def test_export_fields_are_the_json_keys() -> None:
    vote = ExportedVote(1, "b1", "alpha", "beta", "tie", "judge_1", 2, "German", 1.5, True, False)
    assert [f.name for f in battle_fields(False)] == list(battle_record(vote, None))
    released = ReleasedTexts(messages={}, statuses={})
    assert [f.name for f in battle_fields(True)] == list(battle_record(vote, released))
