"""The recompute job: what it stores, the job lock, failures, history, the background task."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.db import make_sync_engine
from arena.job_lock import hold_job_lock
from arena.leaderboard.background import RECOMPUTE_NICENESS
from arena.leaderboard.snapshots import JOB_NAME, KEPT_EXTRAS, kept_snapshot_ids
from arena.models import Battle, RatingSnapshot, Vote
from arena.ratings import InvalidBattles
from tests.conftest import Arena
from tests.leaderboard.conftest import (
    STRENGTHS,
    SeedVote,
    add_models,
    recompute,
    seed_votes,
    simulated_votes,
)


def _snapshots(arena: Arena) -> list[RatingSnapshot]:
    async def work(session: AsyncSession) -> list[RatingSnapshot]:
        return list(await session.scalars(select(RatingSnapshot).order_by(RatingSnapshot.id)))

    return arena.db(work)


def _latest(arena: Arena, method: str, category: str) -> RatingSnapshot:
    found = [
        s
        for s in _snapshots(arena)
        if s.method == method and s.category == category and s.view == ""
    ]
    assert found, f"no {method}/{category} snapshot"
    return max(found, key=lambda s: (s.computed_at, s.id))


def test_recompute_stores_every_method_and_category(rated_arena: Arena) -> None:
    tables = {(s.method, s.category) for s in _snapshots(rated_arena)}
    for method in ("bt", "bt-bootstrap", "bt-style", "elo"):
        for category in ("all", "coding", "long", "multi-turn", "language:English"):
            assert (method, category) in tables
        assert (method, "language:German") in tables

    overall = _latest(rated_arena, "bt", "all")
    names = [row["model"] for row in overall.rows]
    # The simulated strengths come out in order, the newcomer (no win) is set aside.
    assert names == ["alpha-large", "beta-chat", "gamma-7b", "delta-mini"]
    assert [u["model"] for u in overall.extras["unrated"]] == ["newcomer"]
    assert overall.n_votes == 400  # the two uncounted votes and the newcomer's two are out
    assert overall.params["interval"] == "sandwich" and overall.params["category"] == "all"
    assert all(r["ci_lower"] < r["rating"] < r["ci_upper"] for r in overall.rows)
    assert len(overall.extras["win_fraction"]) == 4
    assert abs(sum(overall.extras["sampling_share"].values()) - 1) < 1e-9

    bootstrap = _latest(rated_arena, "bt-bootstrap", "all")
    assert bootstrap.params["bootstrap_rounds"] == 20 and bootstrap.params["seed"] is not None
    elo = _latest(rated_arena, "elo", "all")
    assert all(r["ci_lower"] is None for r in elo.rows)

    coding = _latest(rated_arena, "bt", "coding")
    german = _latest(rated_arena, "bt", "language:German")
    long_prompts = _latest(rated_arena, "bt", "long")
    # One prompt in five of each kind; the categories hold those battles only.
    assert 60 < coding.extras["category_votes"] < 100
    assert 60 < german.extras["category_votes"] < 100
    assert 60 < long_prompts.extras["category_votes"] < 100
    assert german.params["category"] == "language:German"


def test_battles_are_tagged_once_from_their_texts(rated_arena: Arena) -> None:
    async def tags(session: AsyncSession) -> dict[str, tuple[str, str]]:
        rows = await session.execute(
            select(Battle.id, Battle.language, Battle.category_tags)
            .join(Vote, Vote.battle_id == Battle.id)
            .where(Vote.counted.is_(True))
        )
        return {str(i): (str(lang), ",".join(t)) for i, lang, t in rows}

    tags_before = rated_arena.db(tags)
    found = list(tags_before.values())
    assert len(found) == 402
    assert all(lang for lang, _ in found), "every battle with a counted vote has a language"
    assert any(lang == "German" for lang, _ in found)
    assert any("coding" in t for _, t in found) and any("long" in t for _, t in found)
    assert any("multi-turn" in t for _, t in found)
    # Nothing new to tag the second time: the stored tags are reused unchanged.
    recompute(rated_arena)
    assert rated_arena.db(tags) == tags_before


def test_empty_database_stores_nothing(quiet_arena: Arena) -> None:
    outcome = recompute(quiet_arena)
    assert outcome.ran and outcome.stored == 0
    assert _snapshots(quiet_arena) == []


def test_too_few_votes_store_empty_tables(quiet_arena: Arena) -> None:
    add_models(quiet_arena)
    seed_votes(quiet_arena.settings.database_url, [SeedVote("alpha-large", "beta-chat", "model_a")])
    recompute(quiet_arena)
    snapshot = _latest(quiet_arena, "bt", "all")
    assert snapshot.rows == []
    assert {u["model"] for u in snapshot.extras["unrated"]} == {"alpha-large", "beta-chat"}
    assert snapshot.extras["category_votes"] == 1


def test_another_worker_holding_the_job_means_skip(rated_arena: Arena) -> None:
    before = len(_snapshots(rated_arena))
    engine = make_sync_engine(rated_arena.settings.database_url)
    try:
        with hold_job_lock(engine, JOB_NAME) as got:
            assert got
            with hold_job_lock(engine, JOB_NAME) as second:
                assert not second
            assert not recompute(rated_arena).ran
        assert len(_snapshots(rated_arena)) == before
        # Released at the end of the block: the next run goes ahead.
        assert recompute(rated_arena).ran
    finally:
        engine.dispose()


def test_failed_recompute_keeps_the_last_good_snapshot(rated_arena: Arena) -> None:
    good = _latest(rated_arena, "bt", "all")
    seed_votes(
        rated_arena.settings.database_url,
        simulated_votes(STRENGTHS, 30, seed=3),
        start=datetime(2025, 4, 1, tzinfo=UTC),
    )
    with pytest.raises(InvalidBattles, match="anchor must look like MODEL=RATING"):
        recompute(rated_arena, anchor="no rating here")
    still = _latest(rated_arena, "bt", "all")
    assert still.id == good.id and still.rows == good.rows


def test_history_is_thinned_and_only_the_latest_keeps_its_matrices(rated_arena: Arena) -> None:
    for _ in range(2):
        recompute(rated_arena)
    history = [
        s for s in _snapshots(rated_arena) if (s.method, s.category, s.view) == ("bt", "all", "")
    ]
    # Three runs within five minutes: only the newest remains.
    assert len(history) == 1
    assert "win_fraction" in history[0].extras


def test_a_superseded_snapshot_keeps_its_rows_and_short_facts_only(rated_arena: Arena) -> None:
    first = _latest(rated_arena, "bt", "all")

    async def backdate(session: AsyncSession) -> None:
        # Ten minutes old: in another five-minute bucket than the next run's, so it is kept.
        await session.execute(
            update(RatingSnapshot).values(computed_at=first.computed_at - timedelta(minutes=10))
        )

    rated_arena.db(backdate)
    recompute(rated_arena)
    history = {
        s.id: s
        for s in _snapshots(rated_arena)
        if (s.method, s.category, s.view) == ("bt", "all", "")
    }
    assert len(history) == 2
    older, newer = history[first.id], history[max(history)]
    assert older.rows == first.rows
    assert set(older.extras) == set(KEPT_EXTRAS) & set(first.extras)
    assert {k: older.extras[k] for k in older.extras} == {k: first.extras[k] for k in older.extras}
    assert "win_fraction" in newer.extras and "win_fraction" not in older.extras


def test_kept_snapshot_ids_thin_older_history() -> None:
    now = datetime(2025, 5, 10, 12, 30, tzinfo=UTC)
    stamps = [
        (1, now - timedelta(days=5, hours=3)),
        (2, now - timedelta(days=5, hours=1)),  # same day as 1, newer: kept
        (3, now - timedelta(hours=5, minutes=10)),
        (4, now - timedelta(hours=5, minutes=5)),  # same hour as 3, newer: kept
        (5, now - timedelta(minutes=21)),
        (6, now - timedelta(minutes=20, seconds=30)),  # same five minutes as 5: kept
        (7, now - timedelta(minutes=2)),
        (8, now),
    ]
    assert kept_snapshot_ids(stamps, now) == {2, 4, 6, 7, 8}


def test_background_job_recomputes_after_k_votes(arena_factory: Callable[..., Arena]) -> None:
    arena = arena_factory(recompute_every_votes=5, recompute_every_seconds=1.0, bootstrap_rounds=0)
    add_models(arena)
    with arena.client() as client:
        assert client.get("/api/leaderboard").json()["snapshot"] is None
        seed_votes(arena.settings.database_url, simulated_votes(STRENGTHS, 60, seed=11))
        deadline = time.monotonic() + 60
        body = client.get("/api/leaderboard").json()
        while body["snapshot"] is None and time.monotonic() < deadline:
            time.sleep(0.5)
            body = client.get("/api/leaderboard").json()
        # The worker process (still running) yields the CPU to the requests: it is niced.
        niceness = {os.getpriority(os.PRIO_PROCESS, pid) for pid in _child_pids()}
    assert body["snapshot"] is not None, "the background job stored no snapshot within 60 s"
    assert body["n_battles"] == 60
    assert {m["model"] for m in body["models"]} == set(STRENGTHS)
    if Path("/proc/self/task").is_dir():  # Linux; elsewhere the children are not listed
        assert os.getpriority(os.PRIO_PROCESS, 0) + RECOMPUTE_NICENESS in niceness


def _child_pids() -> list[int]:
    """This process's children, from /proc (every thread's list)."""
    pids: list[int] = []
    for listing in Path("/proc/self/task").glob("*/children"):
        pids += [int(pid) for pid in listing.read_text().split()]
    return pids


def test_active_mode_stores_the_pair_gains(arena_factory: Callable[..., Arena]) -> None:
    arena = arena_factory(
        recompute_every_votes=10**9,
        recompute_every_seconds=3600.0,
        bootstrap_rounds=0,
        sampling_mode="active",
    )
    add_models(arena)
    arena.add_model("newcomer", "http://127.0.0.1:9/v1")
    votes = simulated_votes(STRENGTHS, 300)
    votes += [SeedVote("newcomer", "alpha-large", "model_b")]
    seed_votes(arena.settings.database_url, votes)
    assert recompute(arena).ran
    overall = _latest(arena, "bt", "all")
    gains = overall.extras["sampling_gains"]
    # The rated models only (the newcomer never won), every pair of them once.
    assert sorted(gains["models"]) == sorted(STRENGTHS)
    assert len(gains["gain"]) == 6 and all(g > 0 for g in gains["gain"])
    assert "sampling_gains" not in _latest(arena, "elo", "all").extras
    assert "sampling_gains" not in _latest(arena, "bt", "coding").extras
    with arena.client() as client:
        report = client.get("/api/sampling").json()
    assert report["gains_from"] is not None
    assert sum(p["planned_share"] for p in report["pairs"]) == pytest.approx(1.0)


def test_weighted_mode_stores_no_gains(rated_arena: Arena) -> None:
    assert "sampling_gains" not in _latest(rated_arena, "bt", "all").extras


class _StartsABattleOnceLoaded(logging.Handler):
    """Starts a battle through the arena the moment the recompute says its votes are loaded,
    in the recompute's own thread: the recompute computes only after this returns."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.answers: list[httpx.Response | Exception] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "votes loaded" not in record.getMessage():
            return
        try:
            with httpx.Client(base_url=self.url, timeout=10) as visitor:
                self.answers.append(visitor.post("/api/battles", json={"prompt": "Meanwhile?"}))
        except Exception as error:  # noqa: BLE001 (reported by the test)
            self.answers.append(error)


def test_battles_start_while_a_recompute_computes(quiet_arena: Arena) -> None:
    # On SQLite a transaction that has written holds the only write lock: a recompute that kept
    # its tags uncommitted while it computed made every battle and vote wait for its tables.
    add_models(quiet_arena)
    seed_votes(quiet_arena.settings.database_url, simulated_votes(STRENGTHS, 200))
    watcher = _StartsABattleOnceLoaded(quiet_arena.url)
    logger = logging.getLogger("arena.leaderboard.snapshots")
    logger.addHandler(watcher)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        outcome = recompute(quiet_arena)
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(previous_level)
    assert outcome.ran and outcome.n_votes == 200
    [answer] = watcher.answers
    assert isinstance(answer, httpx.Response), f"the battle did not start: {answer!r}"
    assert answer.status_code == 201, answer.text
    # The battle started after the votes were loaded: an open battle, in no table.
    assert _latest(quiet_arena, "bt", "all").n_votes == 200
