"""The demo judge that `make run` names, end to end through the demo server; and the `arena
judge` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from arena.cli import app as cli
from arena.judge.endpoint import judge_name
from arena.models import JudgeEndpoint, OperatorAction
from arena.registry.demo_models import start_demo_for_serve
from arena.upstream.demo import DemoServer
from tests.conftest import add_model, run_db
from tests.fake_upstream import FakeUpstream
from tests.judge.conftest import MODELS, SECRET_KEY, judge_settings, label_due, stored_labels
from tests.leaderboard.conftest import SeedVote, seed_votes
from tests.servers import free_port


def test_serve_demo_names_the_demo_judge_and_it_labels_battles(
    database_url: str, tmp_path: Path
) -> None:
    server = DemoServer(free_port(), seconds_per_word=0).start()
    try:
        settings = judge_settings(database_url, tmp_path, "", demo_port=server.port)
        start_demo_for_serve(settings)  # registers the demo models and names the demo judge
        start_demo_for_serve(settings)
        seed_votes(
            database_url,
            [
                SeedVote("demo-terse", "demo-plain", "model_a", prompt="Solve 3x + 5 = 11 for x."),
                SeedVote(
                    "demo-plain",
                    "demo-thorough",
                    "tie",
                    prompt="Write a short poem about the sea in exactly four lines.",
                    answer_b="I'm sorry, but I can't help with that.",
                ),
            ],
        )
        assert label_due(settings) == 2
    finally:
        server.stop()
    rows = sorted(stored_labels(settings), key=lambda r: bool(r.math), reverse=True)
    assert [r.judge_model for r in rows] == ["demo-judge", "demo-judge"]
    assert rows[0].math and not rows[0].creative_writing
    assert rows[1].creative_writing and rows[1].instruction_following and rows[1].refusal

    async def named(session: AsyncSession) -> tuple[int, bool]:
        count = len((await session.scalars(select(JudgeEndpoint))).all())
        name = await judge_name(session, settings=settings)
        assert name is not None
        return count, name.demo

    assert run_db(settings, named) == (1, True)


def test_the_judge_commands(
    database_url: str,
    tmp_path: Path,
    fake_upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    settings = judge_settings(database_url, tmp_path, "")
    env = {
        "ARENA_DATABASE_URL": database_url,
        "ARENA_DATA_DIR": str(tmp_path),
        "ARENA_SECRET_KEY": SECRET_KEY,
        "ARENA_ALLOW_PRIVATE_ENDPOINTS": "true",
        "JUDGE_KEY": "sk-from-the-environment-42",
    }
    runner = CliRunner()

    shown = runner.invoke(cli, ["judge", "show"], env=env)
    assert shown.exit_code == 0 and "judge: none" in shown.output

    refused = runner.invoke(
        cli,
        ["judge", "set", "--base-url", "http://169.254.169.254/v1", "--model", "judge"],
        env=env,
    )
    assert refused.exit_code == 2 and "metadata" in refused.output
    missing_key = runner.invoke(
        cli,
        ["judge", "set", "--base-url", fake_upstream.base_url, "--model", "judge"]
        + ["--api-key-env", "NOT_SET_ANYWHERE"],
        env=env,
    )
    assert missing_key.exit_code == 2 and "NOT_SET_ANYWHERE is empty" in missing_key.output

    done = runner.invoke(
        cli,
        ["judge", "set", "--base-url", fake_upstream.base_url, "--model", "judge"]
        + ["--api-key-env", "JUDGE_KEY"],
        env=env,
    )
    assert done.exit_code == 0, done.output
    assert "judge set: judge at" in done.output

    for name in MODELS:
        add_model(settings, name, fake_upstream.base_url)
    seed_votes(database_url, [SeedVote(MODELS[0], MODELS[1], "model_a", prompt="[math] 2+2?")])
    assert label_due(settings) == 1
    assert fake_upstream.requests_for("judge")[-1].headers["authorization"] == (
        "Bearer sk-from-the-environment-42"
    )
    shown = runner.invoke(cli, ["judge", "show"], env=env)
    assert "labelled: 1, waiting: 0, given up: 0" in shown.output
    assert "judge / prompt v1: 1" in shown.output

    bad_date = runner.invoke(cli, ["judge", "relabel", "--since", "last week"], env=env)
    assert bad_date.exit_code == 2 and "not a date" in bad_date.output
    later = runner.invoke(cli, ["judge", "relabel", "--since", "2099-01-01"], env=env)
    assert later.exit_code == 0 and "0 battle(s)" in later.output
    again = runner.invoke(cli, ["judge", "relabel"], env=env)
    assert again.exit_code == 0 and "1 battle(s) queued" in again.output

    removed = runner.invoke(cli, ["judge", "unset"], env=env)
    assert removed.exit_code == 0 and "judge removed" in removed.output

    async def actions(session: AsyncSession) -> list[str]:
        return list(await session.scalars(select(OperatorAction.action)))

    assert run_db(settings, actions) == [
        "judge.set",
        "judge.relabel",
        "judge.relabel",
        "judge.unset",
    ]
