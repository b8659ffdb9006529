"""/api/sampling: planned and realised shares, every approved model with its dates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Battle, BattleStatus, ModelStatus, RatingSnapshot, utcnow
from arena.registry import service as registry
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream


def test_sampling_report(arena: Arena, fake_upstream: FakeUpstream) -> None:
    ids = {
        name: arena.add_model(name, fake_upstream.base_url, "normal", organization="Org", **extra)
        for name, extra in [
            ("steady", {"sampling_weight": 1.0}),
            ("heavy", {"sampling_weight": 3.0}),
            ("newcomer", {"sampling_weight": 1.0}),
            ("old-timer", {"sampling_weight": 1.0}),
        ]
    }
    arena.add_model("waiting", fake_upstream.base_url, "normal", status=ModelStatus.pending)
    now = utcnow()

    async def seed(session: AsyncSession) -> None:
        # Battles 2, 10 and 40 days old; the last is outside both windows.
        for n, (a, b, age) in enumerate(
            [("steady", "heavy", 2), ("heavy", "old-timer", 2), ("steady", "heavy", 10)]
            + [("steady", "old-timer", 40)]
        ):
            session.add(
                Battle(
                    id=f"seeded-{n}",
                    model_a_id=ids[a],
                    model_b_id=ids[b],
                    session_hash="s",
                    status=BattleStatus.voted,
                    created_at=now - timedelta(days=age),
                )
            )
        # Every model but "newcomer" has reached the vote target.
        session.add(
            RatingSnapshot(
                method="bt",
                category="all",
                vote_set_hash="x",
                n_votes=900,
                rows=[
                    {"model": name, "rating": 1000.0, "votes": 500}
                    for name in ("steady", "heavy", "old-timer")
                ],
            )
        )
        old_timer = await registry.model_by_name(session, "old-timer")
        await registry.set_status(
            session, model=old_timer, status=ModelStatus.retired, reason="old", actor="test"
        )

    arena.db(seed)
    with arena.client() as client:
        report = client.get("/api/sampling").json()
    rows = {row["name"]: row for row in report["models"]}
    assert "waiting" not in rows  # never approved, never drawn
    assert report["battles_7d"] == 2 and report["battles_30d"] == 3
    assert [rows[m]["battles_7d"] for m in ("steady", "heavy", "newcomer", "old-timer")] == [
        1,
        2,
        0,
        1,
    ]
    assert rows["heavy"]["battles_30d"] == 3 and rows["heavy"]["share_30d"] == pytest.approx(0.5)
    assert sum(r["share_7d"] for r in rows.values()) == pytest.approx(1.0)
    # Retired: kept, with its date, and no planned share.
    assert rows["old-timer"]["status"] == "retired" and rows["old-timer"]["retired_at"]
    assert rows["old-timer"]["expected_share"] is None
    # Planned: weights 1 (steady), 3 (heavy), 1 x boost 4 (newcomer).
    assert rows["newcomer"]["boosted"] and not rows["steady"]["boosted"]
    weights = {"steady": 1.0, "heavy": 3.0, "newcomer": 4.0}
    total, z = sum(weights.values()), (8.0**2 - (1 + 9 + 16)) / 2
    for name, w in weights.items():
        assert rows[name]["expected_share"] == pytest.approx(w * (total - w) / z / 2)
