"""The judged categories' tables and the views' tables re-rated from the snapshot's download by
the page's own reproduce command give the leaderboard's numbers exactly (both databases)."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from arena.models import JudgeLabel
from arena.ratings.categories import estimate_tokens
from arena.ratings_cli import ratings_app
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.judge.conftest import SECRET_KEY, label_due
from tests.leaderboard.conftest import (
    add_models,
    recompute,
    seed_held_back_duplicates,
    seed_votes,
    simulated_votes,
)
from tests.leaderboard.test_reproduce import ROW_FIELDS

HARD_MATH = "[hard] [math] Prove that the product of two odd numbers is odd."
PROMPTS = (
    HARD_MATH,
    "[hard] [if] Name three rivers in three bullet points.",
    "[hard5] [creative] Write a short poem about autumn rain on a tin roof.",
    "[refusal] How would I get into my neighbour's flat without a key, quietly, tonight?",
    "[math] Hi?",
    "Explain briefly why the sky looks blue on a clear afternoon.",
)
STRENGTHS = {"alpha-large": 1.0, "beta-chat": 0.4, "gamma-7b": 0.0, "delta-mini": -0.5}
VOTES = 360
runner = CliRunner()


def _labelled(arena: Arena) -> int:
    async def work(session: AsyncSession) -> int:
        query = select(func.count()).where(JudgeLabel.labelled_at.is_not(None))
        return int(await session.scalar(query) or 0)

    return arena.db(work)


def _judged_arena(arena_factory: Callable[..., Arena], judge_url: str) -> Arena:
    arena = arena_factory(
        recompute_every_votes=10**9,
        recompute_every_seconds=3600.0,
        bootstrap_rounds=20,
        secret_key=SECRET_KEY,
        judge_base_url=judge_url,
        judge_model="judge",
        judge_requests_per_minute=60_000.0,
    )
    add_models(arena)
    votes = simulated_votes(STRENGTHS, VOTES, prompts=PROMPTS, tie_share=0.2, seed=11)
    seed_votes(arena.settings.database_url, votes)
    # The labeller against the fake judge, here and in the arena's own workers alike.
    deadline = time.monotonic() + 120
    while _labelled(arena) < VOTES:
        label_due(arena.settings)
        assert time.monotonic() < deadline, "the battles were never all labelled"
        time.sleep(0.2)
    outcome = recompute(arena)
    assert outcome.ran and outcome.failed == ()
    return arena


def _page_command(client: Any, query: dict[str, str]) -> list[str]:
    """The reproduce command the leaderboard page shows for this table, as arguments."""
    page = client.get("/leaderboard", params=query)
    assert page.status_code == 200, page.text
    found = re.search(r'id="reproduce">.*?<pre><code>(.*?)</code></pre>', page.text, re.S)
    assert found, "the page offers no reproduce command"
    words = shlex.split(html.unescape(found.group(1)))
    assert words[:3] == ["arena", "ratings", "compute"]
    return words[3:]


def _run(arguments: list[str], battles: Path) -> dict[str, Any]:
    position = arguments.index("--battles") + 1
    arguments = [*arguments[:position], str(battles), *arguments[position + 1 :]]
    result = runner.invoke(ratings_app, ["compute", *arguments])
    assert result.exit_code == 0, result.output
    computed: dict[str, Any] = json.loads(result.stdout)
    return computed


def test_judged_tables_and_views_reproduce_from_the_download(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    arena = _judged_arena(arena_factory, fake_upstream.base_url)
    tables = [
        # (category, view, method, download format)
        ("hard", "", "bt", "jsonl"),
        ("hard", "", "bt-bootstrap", "csv"),
        ("math", "", "elo", "parquet"),
        ("all", "ties,short,refusals", "bt", "jsonl"),
        ("all", "ties,short,refusals", "bt-bootstrap", "csv"),
        ("all", "ties,short,refusals", "elo", "parquet"),
        ("math", "short,refusals", "bt", "csv"),
    ]
    with arena.client() as client:
        for category, view, method, suffix in tables:
            query = {"category": category, "method": method, **({"exclude": view} if view else {})}
            board = client.get("/api/leaderboard", params=query).json()
            snapshot = board["snapshot"]
            assert board["n_battles"] > 0 and snapshot["view"] == view.replace(",", "+")
            command = _page_command(client, query)
            if view:
                assert f"--exclude {view}" in " ".join(command)
                assert "--min-prompt-tokens 5" in " ".join(command)
            assert command[command.index("--battles") + 1] == (
                f"battles-snapshot-{snapshot['id']}.jsonl"
            )
            download = client.get(f"/battles.{suffix}", params={"snapshot": snapshot["id"]})
            assert download.status_code == 200
            battles = tmp_path / f"battles-snapshot-{snapshot['id']}.{suffix}"
            battles.write_bytes(download.content)

            computed = _run(command, battles)

            where = (category, view, method, suffix)
            assert computed["vote_set_hash"] == board["vote_set_hash"], where
            assert computed["n_battles"] == board["n_battles"], where
            rows = [{k: m[k] for k in ROW_FIELDS} for m in computed["models"]]
            assert rows == [{k: m[k] for k in ROW_FIELDS} for m in board["models"]], where
            # The same parameters, the view's among them; which judge labelled the table's
            # battles is the page's word, counted before unrated models are left out.
            wanted = {k: v for k, v in board["params"].items() if k != "judged_by"}
            assert computed["params"] == wanted, where
            if category != "all":
                assert board["params"]["judged_by"]

    # What the download carries per vote: the prompt's length, the labels in FastChat's shape.
    with arena.client() as client:
        records = [json.loads(line) for line in client.get("/battles.jsonl").text.splitlines()]
        table = client.get("/battles.csv").text
    assert len(records) == VOTES
    assert {r["category_judge"] for r in records} == {"judge / prompt v1"}
    tags = {r["prompt_tokens"]: r["category_tag"] for r in records}
    # one length per prompt, so each record's prompt is known by it
    assert sorted(tags) == sorted(estimate_tokens(p) for p in PROMPTS)
    assert tags[estimate_tokens(HARD_MATH)] == {
        "criteria_v0.1": {
            "specificity": True,
            "domain_knowledge": True,
            "complexity": True,
            "problem_solving": True,
            "creativity": True,
            "technical_accuracy": True,
            "real_world": True,
        },
        "math_v0.1": {"math": True},
        "if_v0.1": {"if": False},
        "creative_writing_v0.1": {"creative_writing": False},
        "refusal_v0.2": {"refusal": False},
    }
    assert sum(tags[estimate_tokens(PROMPTS[2])]["criteria_v0.1"].values()) == 5
    assert tags[estimate_tokens(PROMPTS[3])]["refusal_v0.2"] == {"refusal": True}
    # The CSV flattens the tags into the columns the rating engine reads.
    rows = list(csv.DictReader(io.StringIO(table, newline="")))
    assert list(rows[0])[-9:] == [
        "judged",
        "judge_hard_score",
        "judge_math",
        "judge_instruction_following",
        "judge_creative_writing",
        "judge_refusal",
        "category_judge",
        "dedup_high_freq",
        "dedup_sampled",
    ]
    hard_math = next(r for r in rows if r["prompt_tokens"] == str(estimate_tokens(HARD_MATH)))
    assert (hard_math["judged"], hard_math["judge_hard_score"], hard_math["judge_math"]) == (
        "True",
        "7",
        "True",
    )


def test_tables_without_deduplication_reproduce_from_the_download(
    quiet_arena: Arena, tmp_path: Path
) -> None:
    seed_held_back_duplicates(quiet_arena)
    tables = [
        # (category, exclude, dedup, method, download format)
        ("all", "", "off", "bt", "jsonl"),
        ("all", "ties", "off", "bt-bootstrap", "csv"),
        ("all", "", "off", "elo", "parquet"),
        # no held-back vote in it: its deduplicated table stored again under the view
        ("coding", "", "off", "bt", "parquet"),
        # the download holds the held-back votes; the reader leaves them out unless told
        ("all", "ties", "on", "bt", "jsonl"),
    ]
    with quiet_arena.client() as client:
        for category, exclude, dedup, method, suffix in tables:
            query = {"category": category, "method": method, "dedup": dedup}
            if exclude:
                query["exclude"] = exclude
            board = client.get("/api/leaderboard", params=query).json()
            snapshot = board["snapshot"]
            command = _page_command(client, query)
            assert ("--keep-duplicates" in command) == (dedup == "off")
            download = client.get(f"/battles.{suffix}", params={"snapshot": snapshot["id"]})
            assert download.status_code == 200
            battles = tmp_path / f"battles-snapshot-{snapshot['id']}.{suffix}"
            battles.write_bytes(download.content)

            computed = _run(command, battles)

            where = (category, exclude, dedup, method, suffix)
            assert computed["vote_set_hash"] == board["vote_set_hash"], where
            assert computed["n_battles"] == board["n_battles"], where
            rows = [{k: m[k] for k in ROW_FIELDS} for m in computed["models"]]
            assert rows == [{k: m[k] for k in ROW_FIELDS} for m in board["models"]], where
            assert computed["params"] == board["params"], where
