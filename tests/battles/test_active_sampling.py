"""Active sampling through the running arena: the plan /api/sampling publishes is the one the draws
use, with its floor, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Battle, RatingSnapshot
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream

RATED = ("alpha", "beta", "gamma")


def _seed_snapshot(arena: Arena, gains: list[float]) -> None:
    """A latest overall snapshot where every rated model is past the vote target, with the pair
    gains in all_pairs order: (alpha, beta), (alpha, gamma), (beta, gamma)."""

    async def work(session: AsyncSession) -> None:
        session.add(
            RatingSnapshot(
                method="bt",
                category="all",
                vote_set_hash="x",
                n_votes=1500,
                rows=[{"model": name, "rating": 1000.0, "votes": 1000} for name in RATED],
                extras={"sampling_gains": {"models": list(RATED), "gain": gains}},
            )
        )

    arena.db(work)


def _drawn_pairs(arena: Arena) -> Counter[frozenset[int]]:
    async def work(session: AsyncSession) -> Counter[frozenset[int]]:
        rows = await session.execute(select(Battle.model_a_id, Battle.model_b_id))
        return Counter(frozenset(row) for row in rows)

    return arena.db(work)


def test_battles_are_drawn_by_the_published_plan(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(sampling_mode="active", sampling_floor=0.0)
    ids = {name: arena.add_model(name, fake_upstream.base_url, "normal") for name in RATED}
    # Only (alpha, beta) would shrink the uncertainty; with no floor it takes every battle.
    _seed_snapshot(arena, [0.8, 0.0, 0.0])
    with arena.client() as client:
        report = client.get("/api/sampling").json()
        for n in range(6):
            created = client.post("/api/battles", json={"prompt": f"Question number {n}?"})
            assert created.status_code == 201, created.text
    assert report["mode"] == "active" and report["floor"] == 0.0
    assert report["gains_from"] is not None
    planned = {(p["model_a"], p["model_b"]): p["planned_share"] for p in report["pairs"]}
    assert planned == pytest.approx(
        {("alpha", "beta"): 1.0, ("alpha", "gamma"): 0.0, ("beta", "gamma"): 0.0}
    )
    assert _drawn_pairs(arena) == Counter({frozenset((ids["alpha"], ids["beta"])): 6})
    # A newer snapshot moves the plan, and the draws with it.
    _seed_snapshot(arena, [0.0, 0.0, 0.5])
    with arena.client() as client:
        report = client.get("/api/sampling").json()
        for n in range(4):
            created = client.post("/api/battles", json={"prompt": f"Another question {n}?"})
            assert created.status_code == 201, created.text
    planned = {(p["model_a"], p["model_b"]): p["planned_share"] for p in report["pairs"]}
    assert planned[("beta", "gamma")] == pytest.approx(1.0)
    assert _drawn_pairs(arena) == Counter(
        {frozenset((ids["alpha"], ids["beta"])): 6, frozenset((ids["beta"], ids["gamma"])): 4}
    )


def test_the_floor_and_the_unrated_newcomer(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(sampling_mode="active", sampling_floor=0.4)
    for name in (*RATED, "newcomer"):
        arena.add_model(name, fake_upstream.base_url, "normal")
    arena.add_model("off", fake_upstream.base_url, "normal", sampling_weight=0.0)
    _seed_snapshot(arena, [0.8, 0.1, 0.0])
    with arena.client() as client:
        report = client.get("/api/sampling").json()
    pairs = report["pairs"]
    assert len(pairs) == 10  # five active models, "off" among them with weight 0
    shares = {(p["model_a"], p["model_b"]): p["planned_share"] for p in pairs}
    assert sum(shares.values()) == pytest.approx(1.0)
    drawable = {k: v for k, v in shares.items() if "off" not in k}
    assert all(v == 0 for k, v in shares.items() if "off" in k)
    # No drawable pair below floor / drawable pairs, even (beta, gamma) with no gain at all.
    assert min(drawable.values()) >= 0.4 / len(drawable) - 1e-12
    assert shares[("beta", "gamma")] == pytest.approx(0.4 / 6)
    assert max(drawable, key=lambda k: drawable[k]) in {("alpha", "newcomer"), ("alpha", "beta")}
    gains = {(p["model_a"], p["model_b"]): p["gain"] for p in pairs}
    assert gains[("alpha", "newcomer")] is None and gains[("alpha", "beta")] == 0.8
    # The newcomer has no rating: boosted, its pairs keep their weighted share x (1 - floor).
    models = {row["name"]: row for row in report["models"]}
    assert models["newcomer"]["boosted"] and not models["alpha"]["boosted"]
    # weights 1, 1, 1, 4 (boosted): pair products 1 x3 and 4 x3, total 15.
    assert shares[("alpha", "newcomer")] == pytest.approx(0.6 * 4 / 15 + 0.4 / 6)
    for name, row in models.items():
        mine = sum(v for k, v in shares.items() if name in k)
        assert row["expected_share"] == pytest.approx(mine / 2)


def test_weighted_mode_publishes_the_weighted_plan(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory()
    arena.add_model("alpha", fake_upstream.base_url, "normal", sampling_weight=1.0)
    arena.add_model("beta", fake_upstream.base_url, "normal", sampling_weight=3.0)
    arena.add_model("gamma", fake_upstream.base_url, "normal", sampling_weight=1.0)
    _seed_snapshot(arena, [0.8, 0.0, 0.0])
    with arena.client() as client:
        report = client.get("/api/sampling").json()
    assert report["mode"] == "weighted" and report["floor"] is None
    assert report["gains_from"] is None
    shares = {(p["model_a"], p["model_b"]): p["planned_share"] for p in report["pairs"]}
    assert shares == pytest.approx(
        {("alpha", "beta"): 3 / 7, ("alpha", "gamma"): 1 / 7, ("beta", "gamma"): 3 / 7}
    )
    assert all(p["gain"] is None for p in report["pairs"])
