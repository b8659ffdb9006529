"""The visitor's own leaderboard, from 20 counted votes on, beside the public one."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from arena.leaderboard.snapshots import RecomputeConfig, run_recompute
from arena.ratings.personal import MIN_PERSONAL_VOTES, personal_ratings
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream, start_battle


def test_the_personal_board_needs_20_counted_votes_and_follows_the_visitors_taste(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(battle_rate_limit="", vote_rate_limit="")
    for name in ("alpha", "beta", "gamma"):
        arena.add_model(name, fake_upstream.base_url)
    with arena.client() as visitor, arena.client() as other:
        empty = visitor.get("/api/me/leaderboard")
        assert empty.status_code == 409
        assert empty.json()["votes_needed"] == MIN_PERSONAL_VOTES
        assert "20 counted votes" in empty.json()["detail"]
        for n in range(MIN_PERSONAL_VOTES):
            battle_id = start_battle(visitor, f"Personal board question number {n}?")
            assert read_stream(visitor, battle_id).end["status"] == "ready"
            # The visitor's taste: whichever side gamma is on wins (the test's database says).
            view = visitor.get(f"/api/battles/{battle_id}").json()
            assert view["models"] is None
            winner = _gamma_side(arena, battle_id)
            voted = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": winner})
            assert voted.status_code == 200, voted.text
            if n == MIN_PERSONAL_VOTES - 2:
                short = visitor.get("/api/me/leaderboard")
                assert short.status_code == 409
                assert short.json() == {
                    "detail": short.json()["detail"],
                    "counted_votes": MIN_PERSONAL_VOTES - 1,
                    "votes_needed": 1,
                }
        assert run_recompute(RecomputeConfig.from_settings(arena.settings)).ran
        board = visitor.get("/api/me/leaderboard")
        assert board.status_code == 200, board.text
        body = board.json()
        assert body["counted_votes"] == MIN_PERSONAL_VOTES
        rows = body["models"]
        assert rows[0]["model"] == "gamma"
        assert [r["rating"] for r in rows] == sorted((r["rating"] for r in rows), reverse=True)
        assert sum(r["votes"] for r in rows) == 2 * MIN_PERSONAL_VOTES
        gamma = rows[0]
        assert gamma["losses"] == 0 and gamma["wins"] == gamma["votes"]
        public = visitor.get("/api/leaderboard").json()
        public_rows = {r["model"]: r["rating"] for r in public["models"]}
        assert public_rows, public
        for row in rows:
            if row["model"] in public_rows:
                assert row["public_rating"] == round(public_rows[row["model"]], 1)
        # Another session's board is its own: empty.
        assert other.get("/api/me/leaderboard").json()["counted_votes"] == 0


def _gamma_side(arena: Arena, battle_id: str) -> str:
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession

    from arena.models import Battle, Model

    async def read(session: AsyncSession) -> str:
        battle = await session.get(Battle, battle_id)
        assert battle is not None
        gamma = await session.scalar(select(Model.id).where(Model.name == "gamma"))
        if battle.model_a_id == gamma:
            return "model_a"
        if battle.model_b_id == gamma:
            return "model_b"
        return "tie"

    return arena.db(read)


def test_personal_ratings_exist_for_any_votes_and_mirror_when_sides_swap() -> None:
    # A model that never lost and a pair never compared: the plain MLE does not exist.
    battles = pd.DataFrame(
        {
            "model_a": ["x", "x", "y"],
            "model_b": ["y", "y", "x"],
            "winner": ["model_a", "model_a", "model_b"],
        }
    )
    rows = {r.model: r for r in personal_ratings(battles)}
    assert rows["x"].rating > 1000 > rows["y"].rating
    assert abs(rows["x"].rating + rows["y"].rating - 2000) < 1e-6
    assert (rows["x"].wins, rows["x"].losses, rows["x"].ties) == (3, 0, 0)
    swapped = battles.rename(columns={"model_a": "model_b", "model_b": "model_a"})
    swapped["winner"] = swapped["winner"].map({"model_a": "model_b", "model_b": "model_a"})
    mirrored = {r.model: r.rating for r in personal_ratings(swapped)}
    assert abs(mirrored["x"] - rows["x"].rating) < 1e-6
    # With the prior of one tie per pair, 3 wins to 0 is odds of 3.5 : 0.5 = 7, so the gap is
    # 400 * log10(7) points.
    import math

    assert abs((rows["x"].rating - rows["y"].rating) - 400 * math.log10(7)) < 1e-3
    assert personal_ratings(battles.iloc[0:0]) == []
