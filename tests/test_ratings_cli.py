"""`arena ratings compute` on battles files: formats, options and error messages."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from arena.ratings_cli import ratings_app
from tests.ratings.simulate import simulate_battles, simulate_style_battles

runner = CliRunner()


@pytest.fixture
def battles_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    battles = simulate_battles(np.array([0.8, 0.2, 0.0, -0.6]), 1200, rng, tie_share=0.2)
    battles["anony"] = True
    battles.loc[:9, "anony"] = False
    path = tmp_path / "clean_battle.json"
    path.write_text(battles.to_json(orient="records"))
    return path


def test_json_output_and_dropped_count(battles_file: Path) -> None:
    result = runner.invoke(
        ratings_app, ["compute", "--battles", str(battles_file), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_battles"] == 1190
    assert data["method"] == "bt" and data["params"]["interval"] == "sandwich"
    assert [m["model"] for m in data["models"]][0] == "model-00"
    assert "left out 10 non-anonymous battle(s)" in result.stderr


def test_elo_csv_has_empty_intervals(battles_file: Path) -> None:
    result = runner.invoke(
        ratings_app,
        ["compute", "--battles", str(battles_file), "--method", "elo", "--format", "csv"],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 4
    assert set(rows[0]) == {
        "model", "rating", "ci_lower", "ci_upper", "rank", "votes", "win_rate", "swap_votes"
    }  # fmt: skip
    # Online Elo has neither intervals nor fragility figures.
    assert all(r["ci_lower"] == "" and r["ci_upper"] == "" and r["swap_votes"] == "" for r in rows)


def test_csv_output_neutralises_model_names_and_keeps_negative_ratings_numbers(
    tmp_path: Path, battles_file: Path
) -> None:
    # A battles file from elsewhere may name its models anything, formulas included.
    renamed = {
        "model-00": '=HYPERLINK("http://evil.example")',
        "model-01": "-minus",
        "model-02": "@at",
    }
    records = json.loads(battles_file.read_text())
    for record in records:
        record["model_a"] = renamed.get(record["model_a"], record["model_a"])
        record["model_b"] = renamed.get(record["model_b"], record["model_b"])
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(records))
    args = ["compute", "--battles", str(hostile), "--format", "csv", "--anchor", "@at=-12.5"]
    result = runner.invoke(ratings_app, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert {r["model"] for r in rows} == {"'" + name for name in renamed.values()} | {"model-03"}
    ratings = {r["model"]: float(r["rating"]) for r in rows}
    assert ratings["'@at"] == pytest.approx(-12.5)
    assert sum(rating < 0 for rating in ratings.values()) >= 2
    for row in rows:
        float(row["ci_lower"]), float(row["ci_upper"]), float(row["win_rate"])
        assert not row["rating"].startswith("'")


def test_bootstrap_anchor_and_table(battles_file: Path) -> None:
    args = ["compute", "--battles", str(battles_file), "--bootstrap", "30", "--seed", "3"]
    first = runner.invoke(ratings_app, [*args, "--format", "json", "--anchor", "model-02=1114"])
    second = runner.invoke(ratings_app, [*args, "--format", "json", "--anchor", "model-02=1114"])
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    data = json.loads(first.stdout)
    assert data["params"]["bootstrap_rounds"] == 30
    assert {m["model"]: m["rating"] for m in data["models"]}["model-02"] == pytest.approx(1114)
    table = runner.invoke(ratings_app, args)
    assert table.exit_code == 0, table.output
    words = " ".join(table.stdout.split())
    assert "model-00" in words and "bootstrap (30 rounds)" in words


def test_errors_are_one_clear_line(tmp_path: Path, battles_file: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model_a": "x", "model_b": "y", "winner": "draw"}\n')
    result = runner.invoke(ratings_app, ["compute", "--battles", str(bad)])
    assert result.exit_code == 2
    assert "winner must be one of" in result.stderr
    result = runner.invoke(
        ratings_app, ["compute", "--battles", str(battles_file), "--anchor", "nobody"]
    )
    assert result.exit_code == 2
    assert "MODEL=RATING" in result.stderr
    result = runner.invoke(
        ratings_app, ["compute", "--battles", str(battles_file), "--category", "coding"]
    )
    assert result.exit_code == 2
    assert "needs the text" in result.stderr


@pytest.fixture
def style_battles(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The same style battles as a FastChat JSON list, as JSON Lines, and as a CSV with the
    flat style columns."""
    rng = np.random.default_rng(5)
    battles, style_a, style_b = simulate_style_battles(
        np.array([0.5, 0.1, 0.0, -0.4]), np.array([300.0, 900.0, 500.0, 400.0]), 0.5, 3000, rng
    )
    json_list = tmp_path / "clean_battle.json"
    json_list.write_text(battles.to_json(orient="records"))
    json_lines = tmp_path / "clean_battle.jsonl"
    json_lines.write_text(battles.to_json(orient="records", lines=True))
    flat = battles.drop(columns="conv_metadata")
    for e, element in enumerate(("tokens", "headers", "lists", "bold")):
        flat[f"style_a_{element}"] = style_a[:, e]
        flat[f"style_b_{element}"] = style_b[:, e]
    table = tmp_path / "battles.csv"
    flat.to_csv(table, index=False)
    return json_list, json_lines, table


def test_bt_style_reads_fastchat_json_json_lines_and_style_columns(
    style_battles: tuple[Path, Path, Path],
) -> None:
    outputs = []
    for path in style_battles:
        result = runner.invoke(
            ratings_app,
            ["compute", "--battles", str(path), "--method", "bt-style", "--format", "json"],
        )
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout))
    first = outputs[0]
    assert first["method"] == "bt-style"
    assert first["params"]["style_convention"] == "fastchat"
    assert [c["element"] for c in first["style_coefficients"]] == [
        "tokens", "headers", "lists", "bold"
    ]  # fmt: skip
    tokens = first["style_coefficients"][0]
    assert tokens["ci_lower"] < 0.5 < tokens["ci_upper"]
    for other in outputs[1:]:
        # The same numbers to rounding (BLAS may sum in another order for other memory).
        for key in ("models", "style_coefficients"):
            for theirs, ours in zip(other[key], first[key], strict=True):
                numbers = {k: v for k, v in ours.items() if isinstance(v, float)}
                assert {k: theirs[k] for k in numbers} == pytest.approx(numbers, abs=1e-9)
                assert {k: v for k, v in theirs.items() if k not in numbers} == {
                    k: v for k, v in ours.items() if k not in numbers
                }


def test_bt_style_table_and_options(style_battles: tuple[Path, Path, Path]) -> None:
    path = str(style_battles[0])
    table = runner.invoke(
        ratings_app,
        ["compute", "--battles", path, "--method", "bt-style", "--style-convention", "arena-rank"],
    )
    assert table.exit_code == 0, table.output
    words = " ".join(table.stdout.split())
    assert "Style coefficients" in words and "convention arena-rank (reg 1)" in words
    assert "tokens" in words and "Odds x per sd" in words
    result = runner.invoke(ratings_app, ["compute", "--battles", path, "--style-reg", "2"])
    assert result.exit_code == 2
    assert "--method bt-style only" in result.stderr


def test_bt_style_without_style_says_what_it_needs(battles_file: Path) -> None:
    result = runner.invoke(
        ratings_app, ["compute", "--battles", str(battles_file), "--method", "bt-style"]
    )
    assert result.exit_code == 2
    assert "conv_metadata" in result.stderr


def _seed_database(url: str) -> None:
    """Six votes between three models, five counted; one held back for nothing but the
    duplicate-prompt limit, one for that and for being too fast."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.orm import Session

    from arena.battles.integrity import DUPLICATE_PROMPT, TOO_FAST
    from arena.db import make_sync_engine
    from arena.models import Battle, Message, Model, Side, Vote, Winner

    start = datetime(2026, 1, 1, tzinfo=UTC)
    results = [("alpha", "beta", Winner.model_a), ("beta", "alpha", Winner.model_a)]
    results += [("alpha", "gamma", Winner.tie), ("gamma", "beta", Winner.model_b)]
    results += [("gamma", "alpha", Winner.model_a), ("beta", "gamma", Winner.tie_bothbad)]
    results += [("alpha", "beta", Winner.model_b), ("gamma", "beta", Winner.model_a)]
    held_back = {5: [TOO_FAST], 6: [DUPLICATE_PROMPT], 7: [DUPLICATE_PROMPT, TOO_FAST]}
    engine = make_sync_engine(url)
    try:
        with Session(engine) as session:
            models = {
                name: Model(name=name, base_url="http://127.0.0.1:9/v1", upstream_model=name)
                for name in ("alpha", "beta", "gamma")
            }
            session.add_all(models.values())
            session.flush()
            for i, (a, b, winner) in enumerate(results):
                battle_id = f"battle-{i}"
                session.add(
                    Battle(
                        id=battle_id,
                        model_a_id=models[a].id,
                        model_b_id=models[b].id,
                        session_hash="s",
                    )
                )
                session.flush()
                session.add(
                    Message(battle_id=battle_id, turn=1, side=Side.user, content="Hello there")
                )
                session.add(
                    Vote(
                        battle_id=battle_id,
                        winner=winner,
                        session_hash="s",
                        created_at=start + timedelta(minutes=i),
                        counted=i not in held_back,
                        flags=held_back.get(i, []),
                    )
                )
            session.commit()
    finally:
        engine.dispose()


def test_counted_votes_from_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("arena.leaderboard.battles_source")
    from arena.db import make_sync_engine
    from arena.models import Base

    url = f"sqlite:///{tmp_path / 'arena.db'}"
    monkeypatch.setenv("ARENA_DATABASE_URL", url)
    engine = make_sync_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    empty = runner.invoke(ratings_app, ["compute"])
    assert empty.exit_code == 2
    assert "no counted votes" in empty.stderr

    _seed_database(url)
    result = runner.invoke(ratings_app, ["compute", "--method", "elo", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # The counted votes only: not the vote held back as a duplicate.
    assert data["n_battles"] == 5 and "view" not in data["params"]
    assert {m["model"] for m in data["models"]} == {"alpha", "beta", "gamma"}
    assert sum(m["votes"] for m in data["models"]) == 10


def test_keep_duplicates_from_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from arena.db import make_sync_engine
    from arena.models import Base

    url = f"sqlite:///{tmp_path / 'arena.db'}"
    monkeypatch.setenv("ARENA_DATABASE_URL", url)
    engine = make_sync_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    _seed_database(url)
    plain = _json(["--method", "elo"])
    kept = _json(["--method", "elo", "--keep-duplicates"])
    # The vote held back for nothing but the limit joins; the one also too fast does not.
    assert (plain["n_battles"], kept["n_battles"]) == (5, 6)
    assert kept["params"] == {**plain["params"], "view": "duplicates", "keep_duplicates": True}
    assert kept["vote_set_hash"] != plain["vote_set_hash"]


def _tag(hard: bool, math: bool, refusal: bool) -> dict[str, dict[str, bool]]:
    criteria = ("specificity", "domain_knowledge", "complexity", "problem_solving")
    more = ("creativity", "technical_accuracy", "real_world")
    return {
        "criteria_v0.1": dict.fromkeys(criteria, True) | dict.fromkeys(more, hard),
        "math_v0.1": {"math": math},
        "if_v0.1": {"if": False},
        "creative_writing_v0.1": {"creative_writing": False},
        "refusal_v0.2": {"refusal": refusal},
    }


@pytest.fixture
def labelled_file(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """Battles with prompt lengths and FastChat category tags (some unlabelled, some unmeasured)."""
    rng = np.random.default_rng(8)
    battles = simulate_battles(np.array([0.7, 0.3, 0.0, -0.5]), 1500, rng, tie_share=0.2)
    n = len(battles)
    tokens = rng.integers(1, 40, n).astype(float)
    tokens[rng.random(n) < 0.05] = np.nan
    battles["prompt_tokens"] = tokens
    labelled = rng.random(n) < 0.9
    hard, math, refusal = (rng.random(n) < share for share in (0.4, 0.3, 0.1))
    battles["category_tag"] = [
        _tag(bool(h), bool(m), bool(r)) if seen else None
        for seen, h, m, r in zip(labelled, hard, math, refusal, strict=True)
    ]
    path = tmp_path / "labelled.jsonl"
    path.write_text(battles.to_json(orient="records", lines=True))
    return path, battles.assign(refusal=labelled & refusal, hard=labelled & hard)


def _json(args: list[str]) -> dict[str, Any]:
    result = runner.invoke(ratings_app, ["compute", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_a_view_leaves_out_what_the_recompute_leaves_out(
    tmp_path: Path, labelled_file: tuple[Path, pd.DataFrame]
) -> None:
    path, battles = labelled_file
    base = ["--battles", str(path), "--category", "hard"]
    viewed = _json([*base, "--exclude", "short, refusals,ties", "--min-prompt-tokens", "8"])
    # The same battles by hand: hard, no tie, no refusal, not under 8 tokens (unmeasured stay).
    kept = battles.loc[
        battles["hard"]
        & ~battles["winner"].str.startswith("tie")
        & ~battles["refusal"]
        & ~(battles["prompt_tokens"] < 8)
    ]
    by_hand = tmp_path / "by_hand.jsonl"
    by_hand.write_text(kept.drop(columns=["refusal", "hard"]).to_json(orient="records", lines=True))
    plain = _json(["--battles", str(by_hand), "--category", "hard"])
    assert viewed["n_battles"] == plain["n_battles"] == len(kept)
    assert viewed["models"] == plain["models"] and viewed["vote_set_hash"] == plain["vote_set_hash"]
    assert viewed["params"] == {
        **plain["params"],
        "view": "ties+short+refusals",
        "exclusions": ["ties", "short", "refusals"],
        "min_prompt_tokens": 8,
    }
    # Without --min-prompt-tokens: FastChat's 5; without short, no cut in the params.
    assert _json([*base, "--exclude", "short"])["params"]["min_prompt_tokens"] == 5
    ties = _json([*base, "--exclude", "ties"])["params"]
    assert ties["exclusions"] == ["ties"] and "min_prompt_tokens" not in ties
    table = runner.invoke(ratings_app, ["compute", *base, "--exclude", "ties"])
    assert table.exit_code == 0 and "without ties" in " ".join(table.stdout.split())


def test_views_say_what_they_need(
    battles_file: Path, labelled_file: tuple[Path, pd.DataFrame]
) -> None:
    labelled, _ = labelled_file
    for args, message in (
        (["--battles", str(labelled), "--exclude", "draws"], "unknown exclusion(s) 'draws'"),
        (["--battles", str(battles_file), "--exclude", "refusals"], "refusal_v0.2"),
        (["--battles", str(battles_file), "--exclude", "short"], "prompt_tokens"),
        (["--battles", str(battles_file), "--category", "math"], "judge's labels"),
        (
            ["--battles", str(labelled), "--exclude", "ties", "--min-prompt-tokens", "3"],
            "--min-prompt-tokens applies to --exclude short only",
        ),
    ):
        result = runner.invoke(ratings_app, ["compute", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)


@pytest.fixture
def deduplicated_file(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """Battles with vote ids and FastChat's dedup_tag, about one in six not sampled."""
    rng = np.random.default_rng(4)
    battles = simulate_battles(np.array([0.6, 0.2, 0.0, -0.4]), 1200, rng, tie_share=0.2)
    held = rng.random(len(battles)) < 0.15
    battles["vote_id"] = np.arange(len(battles))
    battles["dedup_tag"] = [{"high_freq": bool(h), "sampled": not h} for h in held]
    path = tmp_path / "deduplicated.jsonl"
    path.write_text(battles.to_json(orient="records", lines=True))
    return path, battles.assign(held=held)


def _without_tags(tmp_path: Path, battles: pd.DataFrame, name: str) -> str:
    path = tmp_path / name
    path.write_text(
        battles.drop(columns=["dedup_tag", "held"]).to_json(orient="records", lines=True)
    )
    return str(path)


def test_keep_duplicates_rates_the_votes_held_back_as_duplicates(
    tmp_path: Path, deduplicated_file: tuple[Path, pd.DataFrame]
) -> None:
    path, battles = deduplicated_file
    held = battles["held"].to_numpy()
    default = runner.invoke(ratings_app, ["compute", "--battles", str(path), "--format", "json"])
    assert default.exit_code == 0, default.output
    assert (
        f"left out {int(held.sum())} vote(s) held back beyond the duplicate-prompt limit"
        " (dedup_tag sampled: false); --keep-duplicates rates them"
    ) in " ".join(default.stderr.split())
    deduplicated = json.loads(default.stdout)
    # By default the held-back votes are not rated: the table of a file without them.
    sampled_only = _json(["--battles", _without_tags(tmp_path, battles[~held], "sampled.jsonl")])
    assert deduplicated == sampled_only and deduplicated["n_battles"] == int((~held).sum())
    assert "view" not in deduplicated["params"]

    kept = runner.invoke(
        ratings_app, ["compute", "--battles", str(path), "--keep-duplicates", "--format", "json"]
    )
    assert kept.exit_code == 0, kept.output
    assert "held back" not in kept.stderr
    rated = json.loads(kept.stdout)
    # Kept: every vote rated, as a file without dedup_tag is; the params say which view.
    everything = _json(["--battles", _without_tags(tmp_path, battles, "all.jsonl")])
    assert rated["n_battles"] == len(battles) == everything["n_battles"]
    assert rated["models"] == everything["models"]
    assert rated["vote_set_hash"] == everything["vote_set_hash"] != deduplicated["vote_set_hash"]
    assert rated["params"] == {
        **everything["params"],
        "view": "duplicates",
        "keep_duplicates": True,
    }

    no_ties = _json(["--battles", str(path), "--keep-duplicates", "--exclude", "ties"])
    assert no_ties["n_battles"] == int((~battles["winner"].str.startswith("tie")).sum())
    assert no_ties["params"]["view"] == "ties+duplicates"
    assert no_ties["params"]["exclusions"] == ["ties"] and no_ties["params"]["keep_duplicates"]
    table = runner.invoke(ratings_app, ["compute", "--battles", str(path), "--keep-duplicates"])
    assert table.exit_code == 0, table.output
    assert "with the votes held back beyond the duplicate-prompt limit" in " ".join(
        table.stdout.split()
    )


def test_a_file_without_dedup_tag_rates_the_same_with_keep_duplicates(battles_file: Path) -> None:
    plain = runner.invoke(ratings_app, ["compute", "--battles", str(battles_file)])
    assert plain.exit_code == 0 and "duplicate" not in plain.stderr
    args = ["--battles", str(battles_file)]
    without, kept = _json(args), _json([*args, "--keep-duplicates"])
    assert kept["models"] == without["models"]
    assert kept["vote_set_hash"] == without["vote_set_hash"]
    assert kept["params"] == {**without["params"], "view": "duplicates", "keep_duplicates": True}
