"""An owner's stats: hand-counted battles, votes, errors and the rating from the latest snapshot."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Battle, BattleStatus, Model, RatingSnapshot, Vote, Winner, utcnow
from arena.registry.stats import percentiles
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import ADMIN, bearer, owner_with_model
from tests.sse import read_stream, start_battle


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values).model_dump() == {"samples": 100, "p50": 50, "p90": 90, "p99": 99}
    assert percentiles([7.0]).p99 == 7.0
    assert percentiles([]).model_dump() == {"samples": 0, "p50": None, "p90": None, "p99": None}
    assert percentiles([3.0, 1.0, 2.0]).p50 == 2.0


def _battles(arena: Arena, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        with arena.client() as visitor:
            battle_id = start_battle(visitor)
            read_stream(visitor, battle_id)
            ids.append(battle_id)
    return ids


def test_stats_count_what_happened(arena: Arena, fake_upstream: FakeUpstream) -> None:
    arena.add_model("house", fake_upstream.base_url, "normal")
    token = owner_with_model(arena, fake_upstream.base_url, name="ada-7b", model="normal")
    ready = _battles(arena, 3)

    async def break_and_vote(session: AsyncSession) -> None:
        ada = await session.scalar(select(Model.id).where(Model.name == "ada-7b"))
        sides = {
            b.id: ("model_a" if b.model_a_id == ada else "model_b")
            for b in await session.scalars(select(Battle).where(Battle.id.in_(ready)))
        }
        other = {"model_a": "model_b", "model_b": "model_a"}
        votes = [
            (ready[0], Winner(sides[ready[0]]), True, []),  # ada wins
            (ready[1], Winner(other[sides[ready[1]]]), True, []),  # ada loses
            (ready[2], Winner.tie_bothbad, False, ["identity_leak", "rate_limited"]),
        ]
        # Voted as the vote route does: the vote stored, the battle settled.
        await session.execute(
            update(Battle).where(Battle.id.in_(ready)).values(status=BattleStatus.voted)
        )
        for battle_id, winner, counted, flags in votes:
            session.add(
                Vote(
                    battle_id=battle_id,
                    winner=winner,
                    session_hash="s",
                    counted=counted,
                    flags=flags,
                    created_at=utcnow(),
                )
            )
        # The owner's endpoint breaks for the next battle.
        await session.execute(
            update(Model).where(Model.name == "ada-7b").values(upstream_model="error500")
        )
        older = utcnow() - timedelta(hours=1)
        rows = [
            {"model": "house", "rating": 990.0, "ci_lower": 950.0, "ci_upper": 1030.0, "rank": 1},
            {
                "model": "ada-7b",
                "rating": 1010.5,
                "ci_lower": 970.25,
                "ci_upper": 1050.75,
                "rank": 1,
                "votes": 2,
                "win_rate": 0.5,
            },
        ]
        stale = [{**rows[1], "rating": 1.0}]
        session.add_all(
            [
                RatingSnapshot(
                    computed_at=older,
                    method="bt",
                    category="all",
                    vote_set_hash="old",
                    n_votes=1,
                    rows=stale,
                ),
                RatingSnapshot(
                    method="bt", category="all", vote_set_hash="h", n_votes=2, rows=rows
                ),
                RatingSnapshot(
                    method="elo", category="all", vote_set_hash="h", n_votes=2, rows=stale
                ),
                RatingSnapshot(
                    method="bt", category="coding", vote_set_hash="h", n_votes=2, rows=stale
                ),
            ]
        )

    arena.db(break_and_vote)
    with arena.client() as visitor:
        assert read_stream(visitor, start_battle(visitor)).end["status"] == "failed"

    with arena.client() as client:
        answer = client.get("/api/models/ada-7b/stats", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        stats = answer.json()
        assert stats == client.get("/api/admin/models/ada-7b/stats", headers=ADMIN).json()
    assert stats["battles"] == 4
    assert stats["answers"] == 4 and stats["failed_answers"] == 1
    assert stats["error_rate"] == 0.25
    assert "HTTP 500" in stats["recent_errors"][0]["error"]
    assert stats["first_token_ms"]["samples"] == 3 and stats["answer_ms"]["samples"] == 3
    assert stats["first_token_ms"]["p50"] <= stats["answer_ms"]["p50"]
    assert stats["votes"] == 3 and stats["counted_votes"] == 2
    assert (stats["wins"], stats["losses"], stats["ties"], stats["both_bad"]) == (1, 1, 0, 0)
    assert stats["win_rate"] == 0.5
    assert stats["excluded_votes"] == 1
    assert stats["flagged_votes"] == {"identity_leak": 1, "rate_limited": 1}
    # Every battle had ada in one of its two seats.
    assert stats["sampling_share_7d"] == 0.5 and stats["sampling_share_all"] == 0.5
    rating = stats["rating"]
    assert rating["method"] == "bt" and rating["category"] == "all"
    assert (rating["rating"], rating["ci_lower"], rating["ci_upper"]) == (1010.5, 970.25, 1050.75)
    assert rating["rank"] == 1 and rating["votes"] == 2 and rating["win_rate"] == 0.5
    assert [e["status"] for e in stats["events"]] == ["active", "pending"]


def test_stats_of_a_new_model_are_empty_not_errors(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    token = owner_with_model(arena, fake_upstream.base_url, name="ada-7b")
    with arena.client() as client:
        stats = client.get("/api/models/ada-7b/stats", headers=bearer(token)).json()
    assert stats["battles"] == 0 and stats["votes"] == 0
    assert stats["error_rate"] is None and stats["win_rate"] is None
    assert stats["sampling_share_all"] is None and stats["rating"] is None
    assert stats["first_token_ms"] == {"samples": 0, "p50": None, "p90": None, "p99": None}


def test_recent_errors_show_a_status_but_never_the_page_behind_it(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("house", fake_upstream.base_url, "normal")
    token = owner_with_model(arena, fake_upstream.base_url, name="ada-7b", model="normal")

    async def point_at_a_page(session: AsyncSession) -> None:
        # As if the endpoint's host name now led to an internal web server.
        await session.execute(
            update(Model)
            .where(Model.name == "ada-7b")
            .values(upstream_model="page:502:intranet-password-hunter2")
        )

    arena.db(point_at_a_page)
    with arena.client() as visitor:
        assert read_stream(visitor, start_battle(visitor)).end["status"] == "failed"
    with arena.client() as client:
        answer = client.get("/api/models/ada-7b/stats", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    assert [e["error"] for e in answer.json()["recent_errors"]] == [
        "the endpoint answered HTTP 502"
    ]
    assert "hunter2" not in answer.text and "intranet" not in answer.text
