"""Open data through real HTTP: leaderboard CSV/JSON, battles exports, preference pairs."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.integrity import DUPLICATE_PROMPT, IDENTITY_LEAK, TOO_FAST
from arena.leaderboard.downloads import (
    BATTLE_COLUMNS,
    CSV_BATTLE_COLUMNS,
    LABEL_FLAGS,
    ExportedVote,
    _csv_row,
    _json_line,
    _record,
    battle_record,
)
from arena.leaderboard.export_fields import arrow_schema, battle_fields
from arena.models import Vote
from arena.ratings import read_battles_file
from arena.ratings.battles import vote_set_hash
from arena.ratings.views import DUPLICATE_COLUMN
from arena.spreadsheet_csv import csv_text
from tests.conftest import Arena
from tests.leaderboard.conftest import (
    CODE,
    ENGLISH,
    SeedVote,
    add_models,
    recompute,
    seed_votes,
)

FASTCHAT_COLUMNS = ["model_a", "model_b", "winner", "judge", "turn", "anony", "language", "tstamp"]


def test_leaderboard_csv_and_json_are_twins(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        csv = client.get("/leaderboard.csv", params={"category": "coding"})
        api = client.get("/api/leaderboard", params={"category": "coding"})
    assert csv.status_code == 200 and api.status_code == 200
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert csv.headers["content-disposition"] == (
        'attachment; filename="leaderboard-bt-coding.csv"'
    )
    assert api.headers["content-type"] == "application/json"
    table = pd.read_csv(io.StringIO(csv.text))
    body = api.json()
    assert list(table["model"]) == [m["model"] for m in body["models"]]
    assert list(table["rating"]) == [m["rating"] for m in body["models"]]
    assert list(table["ci_lower"]) == [m["ci_lower"] for m in body["models"]]
    assert list(table["votes"]) == [m["votes"] for m in body["models"]]
    # Metadata: in the JSON, and in the headers of both.
    snapshot = body["snapshot"]
    assert body["params"]["category"] == "coding" and body["vote_set_hash"]
    for response in (csv, api):
        assert response.headers["x-arena-vote-set-hash"] == snapshot["vote_set_hash"]
        assert response.headers["x-arena-snapshot-time"] == snapshot["computed_at"].replace(
            "Z", "+00:00"
        )
        assert response.headers["x-arena-method"] == "bt"
        assert json.loads(response.headers["x-arena-params"]) == body["params"]


def test_plot_tables_download(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        matrices = client.get("/api/leaderboard/matrices").json()
        win_csv = client.get("/leaderboard/win-fraction.csv")
        share_csv = client.get("/leaderboard/sampling-share.csv")
        unknown = client.get("/leaderboard/nonsense.csv")
    models = matrices["models"]
    assert models == ["alpha-large", "beta-chat", "gamma-7b", "delta-mini"]
    table = pd.read_csv(io.StringIO(win_csv.text), index_col="model")
    assert list(table.columns) == models
    assert table.loc["alpha-large", "beta-chat"] + table.loc["beta-chat", "alpha-large"] == 1
    shares = pd.read_csv(io.StringIO(share_csv.text))
    assert abs(shares["sampling_share"].sum() - 1) < 1e-9
    assert unknown.status_code == 422 and "win-fraction" in unknown.json()["detail"]


def _counted_votes(arena: Arena) -> int:
    async def work(session: AsyncSession) -> int:
        return len((await session.scalars(select(Vote.id).where(Vote.counted.is_(True)))).all())

    return arena.db(work)


def test_battles_exports_are_anonymised_clean_battles(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        jsonl = client.get("/battles.jsonl")
        csv = client.get("/battles.csv")
    assert jsonl.status_code == 200 and csv.status_code == 200
    assert jsonl.headers["content-type"] == "application/x-ndjson; charset=utf-8"
    assert jsonl.headers["content-disposition"] == 'attachment; filename="battles.jsonl"'
    assert csv.headers["content-disposition"] == 'attachment; filename="battles.csv"'
    # Streamed, not sized up front.
    assert "content-length" not in jsonl.headers
    records = [json.loads(line) for line in jsonl.text.splitlines()]
    assert len(records) == _counted_votes(rated_arena) == 402
    assert list(records[0])[:8] == FASTCHAT_COLUMNS
    assert all(
        r["anony"] is True and r["winner"] in {"model_a", "model_b", "tie", "tie (bothbad)"}
        for r in records
    )
    assert [r["tstamp"] for r in records] == sorted(r["tstamp"] for r in records)
    # No session or IP data; the judge is a salted hash, the same for one visitor's votes.
    for raw in (jsonl.text, csv.text):
        assert "session-hash" not in raw and "ip-hash" not in raw and "visitor" not in raw
    judges = {r["judge"] for r in records}
    assert 1 < len(judges) <= 18 and all(j.startswith("judge_") for j in judges)
    # No texts unless the operator releases them.
    assert "conversation_a" not in records[0] and "Rayleigh" not in jsonl.text
    assert jsonl.headers["x-arena-conversations-released"] == "false"
    table = pd.read_csv(io.StringIO(csv.text))
    assert list(table.columns[:8]) == FASTCHAT_COLUMNS and len(table) == 402
    assert list(table["vote_id"]) == [r["vote_id"] for r in records]
    assert list(table["tstamp"]) == [r["tstamp"] for r in records]


def test_preferences_need_released_conversations(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        response = client.get("/preferences.jsonl")
    assert response.status_code == 404
    assert "ARENA_RELEASE_CONVERSATIONS=true" in response.json()["detail"]


def test_released_conversations_and_preference_pairs(
    arena_factory: Callable[..., Arena],
) -> None:
    arena = arena_factory(
        release_conversations=True, recompute_every_votes=10**9, recompute_every_seconds=3600.0
    )
    add_models(arena)
    seed_votes(
        arena.settings.database_url,
        [
            SeedVote("alpha-large", "beta-chat", "model_a", answer_a="Paris.", answer_b="Lyon."),
            SeedVote("gamma-7b", "alpha-large", "model_b", prompt=CODE, turns=2),
            SeedVote("beta-chat", "gamma-7b", "tie"),
            SeedVote("delta-mini", "gamma-7b", "tie (bothbad)"),
            SeedVote("beta-chat", "delta-mini", "model_b", counted=False),
        ],
    )
    recompute(arena)
    with arena.client() as client:
        battles = client.get("/battles.jsonl")
        csv = client.get("/battles.csv")
        prefs = client.get("/preferences.jsonl")
    records = [json.loads(line) for line in battles.text.splitlines()]
    assert len(records) == 4 and battles.headers["x-arena-conversations-released"] == "true"
    first = records[0]
    assert first["conversation_a"] == [
        {"role": "user", "content": "Explain briefly why the sky looks blue on a clear afternoon."},
        {"role": "assistant", "content": "Paris. (turn 1)"},
    ]
    assert first["conversation_b"][1]["content"] == "Lyon. (turn 1)"
    assert len(records[1]["conversation_a"]) == 4 and records[1]["tag_coding"] is True
    table = pd.read_csv(io.StringIO(csv.text))
    assert table.loc[0, "prompt"].startswith("Explain briefly")
    assert table.loc[1, "answer_b"].count("(turn") == 2

    assert prefs.status_code == 200
    assert prefs.headers["content-type"] == "application/x-ndjson; charset=utf-8"
    assert prefs.headers["content-disposition"] == 'attachment; filename="preferences.jsonl"'
    pairs = [json.loads(line) for line in prefs.text.splitlines()]
    # Decisive counted votes only: the tie, the both-bad and the uncounted vote are left out.
    assert len(pairs) == 2
    assert pairs[0] == {
        "prompt": [
            {
                "role": "user",
                "content": "Explain briefly why the sky looks blue on a clear afternoon.",
            }
        ],
        "chosen": [{"role": "assistant", "content": "Paris. (turn 1)"}],
        "rejected": [{"role": "assistant", "content": "Lyon. (turn 1)"}],
    }
    # Model B won the two-turn battle: its whole side of the conversation is the chosen one.
    assert pairs[1]["prompt"][0]["content"] == CODE
    assert [m["role"] for m in pairs[1]["chosen"]] == ["assistant", "user", "assistant"]
    assert pairs[1]["chosen"][0]["content"].startswith("Sunlight scatters")
    assert pairs[1]["rejected"][0]["content"].startswith("Because of Rayleigh")


def test_snapshot_scoped_export(rated_arena: Arena) -> None:
    with rated_arena.client() as client:
        snapshot = client.get("/api/leaderboard").json()["snapshot"]
        seed_votes(
            rated_arena.settings.database_url,
            [SeedVote("alpha-large", "beta-chat", "tie")],
            start=datetime.now(UTC) + timedelta(seconds=5),
        )
        everything = client.get("/battles.jsonl").text.splitlines()
        scoped = client.get("/battles.jsonl", params={"snapshot": snapshot["id"]})
        gone = client.get("/battles.csv", params={"snapshot": 999_999})
    lines = scoped.text.splitlines()
    assert len(everything) == 403
    # The newer vote and the unrated newcomer's two votes are not part of the snapshot.
    assert len(lines) == 400 == snapshot["n_votes"]
    assert not any("newcomer" in line for line in lines)
    assert scoped.headers["content-disposition"] == (
        f'attachment; filename="battles-snapshot-{snapshot["id"]}.jsonl"'
    )
    assert gone.status_code == 404 and "thinned out" in gone.json()["detail"]


def test_json_lines_are_what_json_dumps_writes() -> None:
    for vote in (
        ExportedVote(
            1, "b1", "alpha", "beta", "model_a", "judge_00ff", 1, "English", 1.5, True, False
        ),
        ExportedVote(
            2,
            "b2",
            "a/b:c+d",
            "x.y_z",
            "tie (bothbad)",
            "judge_1",
            3,
            '中文 "q" \\',
            1.7e9 + 1e-6,
            False,
            True,
        ),
    ):
        assert _json_line(vote) == json.dumps(_record(vote), ensure_ascii=False)
        labelled = replace(
            vote, prompt_tokens=12, label_bits=0b10010110011, category_judge='m "q" / prompt v1'
        )
        assert _json_line(labelled) == json.dumps(_record(labelled), ensure_ascii=False)
        duplicate = replace(vote, sampled=False)
        assert _json_line(duplicate) == json.dumps(_record(duplicate), ensure_ascii=False)
        # The CSV row holds the same values under the same names, the tags flattened.
        for exported in (vote, duplicate, labelled):
            row = dict(zip(CSV_BATTLE_COLUMNS, _csv_row(exported), strict=True))
            record = _record(exported)
            nested = ("conv_metadata", "category_tag", "dedup_tag")
            plain = [c for c in BATTLE_COLUMNS if c not in nested]
            assert {c: row[c] for c in plain} == {c: record[c] for c in plain}
            assert (row["dedup_high_freq"], row["dedup_sampled"]) == (
                record["dedup_tag"]["high_freq"],
                record["dedup_tag"]["sampled"],
            )
        assert row["judge_hard_score"] == 4 and row["judge_refusal"] is True
        assert _record(vote)["dedup_tag"] == {"high_freq": False, "sampled": True}
        assert _record(duplicate)["dedup_tag"] == {"high_freq": True, "sampled": False}


def _labelled_votes() -> list[ExportedVote]:
    """One vote for each value of the labels (label_bits), and one never labelled."""
    models = ("alpha", "beta", "gamma")
    return [
        ExportedVote(
            vote_id=n + 1,
            battle_id=f"b{n}",
            model_a=models[n % 3],
            model_b=models[(n + 1) % 3],
            winner="model_a" if n % 2 else "tie",
            judge="judge_1",
            turn=1,
            language="English",
            tstamp=1.7e9 + n,
            tag_coding=False,
            tag_long=False,
            prompt_tokens=None if bits is None else n % 9,
            label_bits=bits,
            category_judge=None if bits is None else "judge / prompt v1",
        )
        for n, bits in enumerate([*range(1 << len(LABEL_FLAGS)), None])
    ]


def _write_export(votes: list[ExportedVote], path: Path) -> None:
    if path.suffix == ".jsonl":
        path.write_text("\n".join(_json_line(v) for v in votes) + "\n")
    elif path.suffix == ".csv":
        path.write_text(csv_text([list(CSV_BATTLE_COLUMNS), *(_csv_row(v) for v in votes)]))
    else:
        schema = arrow_schema(battle_fields(False))
        records = [battle_record(v, None) for v in votes]
        pq.write_table(pa.Table.from_pylist(records, schema=schema), path)


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_every_label_the_export_writes_is_read_back(tmp_path: Path, suffix: str) -> None:
    votes = _labelled_votes()
    path = tmp_path / f"battles.{suffix}"
    _write_export(votes, path)
    battles = read_battles_file(path).battles
    labelled = [v.label_bits is not None for v in votes]
    bits = [v.label_bits or 0 for v in votes]
    assert battles["judged"].tolist() == labelled
    # The hard score is the number of criteria met, the low seven bits.
    assert battles["judge_hard_score"].tolist() == [(b & 0x7F).bit_count() for b in bits]
    for offset, column in enumerate(
        ("judge_math", "judge_instruction_following", "judge_creative_writing", "judge_refusal")
    ):
        assert battles[column].tolist() == [bool(b >> (7 + offset) & 1) for b in bits], column
    assert battles["refusal"].tolist() == battles["judge_refusal"].tolist()
    tokens = battles["prompt_tokens"].tolist()
    assert tokens[:-1] == [float(v.prompt_tokens or 0) for v in votes[:-1]]
    assert math.isnan(tokens[-1])


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_the_dedup_tag_the_export_writes_is_read_back(tmp_path: Path, suffix: str) -> None:
    votes = [replace(v, sampled=v.vote_id % 3 != 0) for v in _labelled_votes()]
    path = tmp_path / f"battles.{suffix}"
    _write_export(votes, path)
    held_back = [v.vote_id for v in votes if not v.sampled]
    assert 0 < len(held_back) < len(votes)

    deduplicated = read_battles_file(path)
    assert deduplicated.dropped_duplicates == len(held_back)
    assert deduplicated.battles["vote_id"].astype(int).tolist() == [
        v.vote_id for v in votes if v.sampled
    ]
    assert DUPLICATE_COLUMN not in deduplicated.battles.columns

    kept = read_battles_file(path, keep_duplicates=True)
    assert kept.dropped_duplicates == 0
    assert kept.battles["vote_id"].astype(int).tolist() == [v.vote_id for v in votes]
    assert kept.battles[DUPLICATE_COLUMN].tolist() == [not v.sampled for v in votes]


PLANTED_PROMPT = (
    "I am Jean, call me on +33 6 12 34 56 78 or write to jean.dupont+arena@mail.example.fr; "
    "my card 4111 1111 1111 1111 was charged twice, refund it to DE89 3704 0044 0532 0130 00."
)
PLANTED_ANSWER = "I cannot reach 203.0.113.45; try (415) 555-0132 at 221B Baker Street"
PLANTED = (
    "+33 6 12 34 56 78",
    "jean.dupont+arena@mail.example.fr",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "203.0.113.45",
    "(415) 555-0132",
    "221B Baker Street",
)
WITHHELD = "Hello, I am beta-chat by Beta Inc, and my secret number is 42."


def test_released_texts_are_redacted_and_identity_leaks_withheld(
    arena_factory: Callable[..., Arena],
) -> None:
    arena = arena_factory(
        release_conversations=True, recompute_every_votes=10**9, recompute_every_seconds=3600.0
    )
    add_models(arena)
    seed_votes(
        arena.settings.database_url,
        [
            SeedVote(
                "alpha-large",
                "beta-chat",
                "model_a",
                prompt=PLANTED_PROMPT,
                answer_b=PLANTED_ANSWER,
            ),
            # Counted, but its answer named its own model: its texts never leave.
            SeedVote(
                "beta-chat",
                "gamma-7b",
                "model_a",
                answer_a=WITHHELD,
                battle_flags=(IDENTITY_LEAK,),
            ),
            SeedVote("gamma-7b", "delta-mini", "model_b"),
        ],
    )
    recompute(arena)
    with arena.client() as client:
        battles = client.get("/battles.jsonl")
        csv = client.get("/battles.csv")
        prefs = client.get("/preferences.jsonl")
    assert battles.status_code == csv.status_code == prefs.status_code == 200
    for body in (battles.text, csv.text, prefs.text):
        for value in PLANTED:
            assert value not in body
        assert "secret number" not in body
    records = [json.loads(line) for line in battles.text.splitlines()]
    # Every counted vote keeps its line; the withheld battle's conversations are empty.
    assert len(records) == 3
    prompt = records[0]["conversation_a"][0]["content"]
    assert prompt == (
        "I am Jean, call me on [PHONE] or write to [EMAIL]; "
        "my card [CARD] was charged twice, refund it to [IBAN]."
    )
    assert records[0]["conversation_b"][1]["content"] == (
        "I cannot reach [IP]; try [PHONE] at [ADDRESS] (turn 1)"
    )
    assert records[1]["conversation_a"] == [] and records[1]["conversation_b"] == []
    assert [r["text_status"] for r in records] == ["released", "withheld", "released"]
    assert records[2]["conversation_a"][0]["content"] == ENGLISH
    table = pd.read_csv(io.StringIO(csv.text), keep_default_na=False)
    assert table.loc[0, "prompt"] == prompt
    assert "[ADDRESS]" in table.loc[0, "answer_b"]
    assert table.loc[1, "prompt"] == table.loc[1, "answer_a"] == ""
    pairs = [json.loads(line) for line in prefs.text.splitlines()]
    # Two decisive votes are left once the withheld battle is out.
    assert len(pairs) == 2
    assert pairs[0]["prompt"][0]["content"] == prompt
    assert pairs[0]["rejected"][0]["content"].startswith("I cannot reach [IP]")


def test_votes_held_back_as_duplicates_are_exported_marked(
    arena_factory: Callable[..., Arena], tmp_path: Path
) -> None:
    arena = arena_factory(
        release_conversations=True, recompute_every_votes=10**9, recompute_every_seconds=3600.0
    )
    add_models(arena)
    duplicate = (DUPLICATE_PROMPT,)
    seed_votes(
        arena.settings.database_url,
        [
            SeedVote("alpha-large", "beta-chat", "model_a"),
            SeedVote("beta-chat", "gamma-7b", "model_a"),
            SeedVote("gamma-7b", "alpha-large", "model_a"),
            SeedVote("alpha-large", "beta-chat", "tie"),
            # Held back for nothing but the duplicate limit: exported, not sampled.
            SeedVote(
                "gamma-7b",
                "alpha-large",
                "model_b",
                counted=False,
                battle_flags=duplicate,
                held_back_for=duplicate,
            ),
            # Held back for the limit and for something else: not exported.
            SeedVote(
                "delta-mini",
                "alpha-large",
                "model_a",
                counted=False,
                battle_flags=duplicate,
                held_back_for=(DUPLICATE_PROMPT, TOO_FAST),
            ),
            SeedVote("delta-mini", "beta-chat", "tie", counted=False, held_back_for=(TOO_FAST,)),
        ],
    )
    outcome = recompute(arena)
    assert outcome.ran
    with arena.client() as client:
        snapshot = client.get("/api/leaderboard").json()["snapshot"]
        downloads = {
            suffix: client.get(f"/battles.{suffix}", params={"snapshot": snapshot["id"]})
            for suffix in ("jsonl", "csv", "parquet")
        }
        pairs = [json.loads(line) for line in client.get("/preferences.jsonl").text.splitlines()]
        card = client.get("/battles.card.md", params={"snapshot": snapshot["id"]}).text
    records = [json.loads(line) for line in downloads["jsonl"].text.splitlines()]
    counted = {"high_freq": False, "sampled": True}
    assert [(r["winner"], r["dedup_tag"]) for r in records] == [
        *(("model_a", counted),) * 3,
        ("tie", counted),
        ("model_b", {"high_freq": True, "sampled": False}),
    ]
    assert records[4]["conversation_a"][0]["content"] == ENGLISH
    table = pd.read_csv(io.StringIO(downloads["csv"].text))
    assert list(table.columns[-6:-4]) == ["dedup_high_freq", "dedup_sampled"]
    assert table["dedup_sampled"].tolist() == [True, True, True, True, False]
    assert table["dedup_high_freq"].tolist() == [False, False, False, False, True]
    parquet = pq.read_table(io.BytesIO(downloads["parquet"].content))
    assert parquet.column("dedup_tag").to_pylist() == [r["dedup_tag"] for r in records]
    # The preference pairs stay counted decisive votes only: side A won each of those.
    assert [p["chosen"][0]["content"] for p in pairs] == [
        "Because of Rayleigh scattering. (turn 1)"
    ] * 3
    # The card counts them and says what raters do with them.
    assert "held_back_duplicates: 1" in card
    assert "left out by raters by default): 1" in card
    assert "Raters leave them out by default" in card and "--keep-duplicates" in card
    # Read back from each format: the plain table's votes by default, all three when kept.
    for suffix, response in downloads.items():
        path = tmp_path / f"battles.{suffix}"
        path.write_bytes(response.content)
        deduplicated = read_battles_file(path)
        assert deduplicated.dropped_duplicates == 1, suffix
        assert vote_set_hash(deduplicated.battles) == snapshot["vote_set_hash"], suffix
        kept = read_battles_file(path, keep_duplicates=True).battles
        assert kept[DUPLICATE_COLUMN].tolist() == [False, False, False, False, True], suffix
        assert kept["vote_id"].astype(int).tolist() == [r["vote_id"] for r in records], suffix
    assert "same_votes: true" in card
