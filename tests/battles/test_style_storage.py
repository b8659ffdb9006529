"""Each battle's style features: stored with its answers, backfilled for older battles, kept
through erasure; on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Battle, Model
from arena.ratings.style_control import STYLE_COLUMNS
from arena.ratings.style_features import count_tokens
from tests.conftest import Arena
from tests.fake_upstream import MARKDOWN_ANSWER, FakeUpstream, answer_for
from tests.leaderboard.conftest import SeedVote, add_models, seed_votes
from tests.sse import read_stream, start_battle

ARENA = Path(sys.executable).parent / "arena"
NO_HEADERS = {f"h{i}": 0 for i in range(1, 7)}


def _style(arena: Arena, battle_id: str) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
    """(the model on side a, the battle's conv_metadata, its style_* columns)."""

    async def read(session: AsyncSession) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
        battle = await session.get_one(Battle, battle_id)
        model_a = await session.get_one(Model, battle.model_a_id)
        columns = {column: getattr(battle, column) for column in STYLE_COLUMNS}
        return model_a.upstream_model, battle.conv_metadata, columns

    return arena.db(read)


def test_each_turn_stores_each_sides_style_over_all_its_answers(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("marked-up", fake_upstream.base_url, "markdown", organization="M")
    arena.add_model("plain-text", fake_upstream.base_url, "normal", organization="P")
    with arena.client() as visitor:
        battle_id = start_battle(visitor, "first question")
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        side_a, after_one, _ = _style(arena, battle_id)
        turn = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "second question"})
        assert turn.status_code == 201, turn.text
        assert read_stream(visitor, battle_id).end["status"] == "ready"
    _, after_two, columns = _style(arena, battle_id)
    marked, plain = ("a", "b") if side_a == "markdown" else ("b", "a")
    assert after_one is not None and after_two is not None

    # MARKDOWN_ANSWER, twice: "# Title", two "- " items, one **bold**; its fenced code is left
    # out (a "print('hi')" line holds nothing that counts anyway).
    assert after_two[f"header_count_{marked}"] == {**NO_HEADERS, "h1": 2}
    assert after_two[f"list_count_{marked}"] == {"ordered": 0, "unordered": 4}
    assert after_two[f"bold_count_{marked}"] == {"**": 2, "__": 0}
    assert after_two[f"sum_assistant_{marked}_tokens"] == 2 * count_tokens(MARKDOWN_ANSWER)
    assert after_one[f"header_count_{marked}"] == {**NO_HEADERS, "h1": 1}
    assert after_one[f"sum_assistant_{marked}_tokens"] == count_tokens(MARKDOWN_ANSWER)

    assert after_two[f"header_count_{plain}"] == NO_HEADERS
    assert after_two[f"list_count_{plain}"] == {"ordered": 0, "unordered": 0}
    assert after_two[f"sum_assistant_{plain}_tokens"] == count_tokens(
        answer_for("first question")
    ) + count_tokens(answer_for("second question"))

    # The columns the recompute reads hold each element's sum
    assert columns[f"style_{marked}_headers"] == 2
    assert columns[f"style_{marked}_lists"] == 4
    assert columns[f"style_{marked}_bold"] == 2
    assert columns[f"style_{marked}_tokens"] == after_two[f"sum_assistant_{marked}_tokens"]
    assert columns[f"style_{plain}_headers"] == columns[f"style_{plain}_lists"] == 0


def _backfill(arena: Arena, cwd: Path) -> subprocess.CompletedProcess[str]:
    variables = {
        **os.environ,
        "ARENA_DATABASE_URL": arena.settings.database_url,
        "ARENA_DATA_DIR": str(cwd),
    }
    return subprocess.run(
        [str(ARENA), "battles", "backfill-style", "--batch", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=variables,
        check=False,
    )


def _all_styles(arena: Arena) -> dict[str, tuple[bool, dict[str, Any] | None]]:
    """Each battle's (erased?, conv_metadata), by battle id."""

    async def read(session: AsyncSession) -> dict[str, tuple[bool, dict[str, Any] | None]]:
        battles = (await session.scalars(select(Battle))).all()
        return {b.id: (b.erased_at is not None, b.conv_metadata) for b in battles}

    return arena.db(read)


def test_backfill_works_styles_out_from_the_stored_answers(arena: Arena, tmp_path: Path) -> None:
    add_models(arena)
    seed_votes(
        arena.settings.database_url,
        [
            SeedVote("alpha-large", "beta-chat", "model_a", answer_a="## Plan\n1. one\n2. two"),
            SeedVote("beta-chat", "gamma-7b", "tie", answer_b="**yes** and __no__"),
            SeedVote("gamma-7b", "delta-mini", "model_b", turns=2, answer_a="- a\n- b"),
            SeedVote("alpha-large", "delta-mini", "model_b", erased=True),
        ],
    )
    before = _all_styles(arena)
    assert all(metadata is None for _, metadata in before.values())

    done = _backfill(arena, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "style features stored for 3 battle(s)" in done.stdout
    assert "1 battle(s) were erased before their style was worked out" in done.stdout
    assert "2/3 battles" in done.stderr and "3/3 battles" in done.stderr

    after = _all_styles(arena)
    styled = [m for erased, m in after.values() if not erased]
    assert all(m is not None for m in styled)
    assert [m for erased, m in after.values() if erased] == [None]
    by_shape = {
        (
            m["header_count_a"]["h2"],
            m["list_count_a"]["ordered"],
            m["bold_count_b"]["**"],
            m["bold_count_b"]["__"],
            m["list_count_a"]["unordered"],
        )
        for m in styled
        if m is not None
    }
    # seed_votes stores "<answer> (turn N)" for each turn: a two-turn battle's side a holds
    # "- a\n- b" twice, so four items.
    assert by_shape == {(1, 2, 0, 0, 0), (0, 0, 1, 1, 0), (0, 0, 0, 0, 4)}

    again = _backfill(arena, tmp_path)
    assert again.returncode == 0 and "style features stored for 0 battle(s)" in again.stdout
    assert _all_styles(arena) == after


def test_erasing_an_unstyled_battle_works_its_style_out_first(arena: Arena) -> None:
    add_models(arena)
    seed_votes(
        arena.settings.database_url,
        [SeedVote("alpha-large", "beta-chat", "model_a", answer_a="# Big\n**claim**")],
    )
    (battle_id,) = _all_styles(arena)
    erased = subprocess.run(
        [str(ARENA), "battles", "erase", "--", battle_id],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ARENA_DATABASE_URL": arena.settings.database_url},
        check=False,
    )
    assert erased.returncode == 0, erased.stderr
    ((is_erased, metadata),) = _all_styles(arena).values()
    assert is_erased and metadata is not None
    assert metadata["header_count_a"]["h1"] == 1 and metadata["bold_count_a"]["**"] == 1
