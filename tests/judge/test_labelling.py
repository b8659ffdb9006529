"""The labeller against the fake upstream as judge, on SQLite and PostgreSQL: labels stored
with their judge and prompt version, hostile judges leaving them missing and retried with
backoff, the rate limit and the queue's bound, relabelling, and the judged tables."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.integrity import DUPLICATE_PROMPT, SUSPICIOUS_SESSION
from arena.db import make_async_engine, make_sessionmaker, make_sync_engine
from arena.errors import EndpointRefused
from arena.judge import labels
from arena.judge.endpoint import current_judge, set_judge
from arena.judge.verdict import PROMPT_VERSION
from arena.judge.worker import JudgeWorker
from arena.leaderboard.snapshots import RecomputeConfig, run_recompute
from arena.models import Battle, BattleStatus, JudgeLabel, Model, RatingSnapshot, utcnow
from arena.registry.keys import KeyRing
from arena.upstream.http import UpstreamClient
from tests.conftest import add_model, run_db
from tests.fake_upstream import FakeUpstream
from tests.judge.conftest import MODELS, judge_settings, label_due, stored_labels
from tests.leaderboard.conftest import SeedVote, seed_votes

PROMPTS = (
    "[hard] [math] Prove that the sum of two odd numbers is even.",
    "[hard5] [if] List three rivers in exactly three bullet points.",
    "[creative] Write a short poem about autumn rain.",
    "[refusal] How do I pick my neighbour's lock?",
)


def _seed(
    settings_url: str,
    n: int = 8,
    *,
    counted: bool = True,
    held_back_for: tuple[str, ...] = (SUSPICIOUS_SESSION,),
) -> None:
    votes = [
        SeedVote(
            MODELS[i % 2],
            MODELS[(i + 1) % 2],
            "model_a" if i % 3 else "model_b",
            prompt=PROMPTS[i % len(PROMPTS)],
            counted=counted,
            held_back_for=held_back_for,
        )
        for i in range(n)
    ]
    seed_votes(settings_url, votes)


def _models(settings: object, upstream: FakeUpstream) -> None:
    for name in MODELS:
        add_model(settings, name, upstream.base_url)  # type: ignore[arg-type]


def test_voted_battles_are_labelled_with_the_judge_and_prompt_version(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    settings = judge_settings(
        database_url, tmp_path, "judge", judge_base_url=fake_upstream.base_url
    )
    _models(settings, fake_upstream)
    _seed(database_url)
    assert label_due(settings) == 8
    rows = stored_labels(settings)
    assert len(rows) == 8
    assert all(r.labelled_at is not None and r.judge_model == "judge" for r in rows)
    assert {r.prompt_version for r in rows} == {PROMPT_VERSION}
    by_score = sorted(r.hard_score or 0 for r in rows)
    assert by_score == [1, 1, 1, 1, 5, 5, 7, 7]
    assert sum(bool(r.math) for r in rows) == 2
    assert sum(bool(r.instruction_following) for r in rows) == 2
    assert sum(bool(r.creative_writing) for r in rows) == 2
    assert sum(bool(r.refusal) for r in rows) == 2
    # Exposed for a view that leaves refusals out: a condition on any battle id.
    refused_ids = {r.battle_id for r in rows if r.refusal}

    async def refused(session: AsyncSession) -> set[str]:
        return set(await session.scalars(select(Battle.id).where(labels.refused(Battle.id))))

    assert run_db(settings, refused) == refused_ids
    # Nothing left to do: a second pass sends nothing.
    assert label_due(settings) == 0

    outcome = run_recompute(RecomputeConfig.from_settings(settings))
    assert outcome.ran

    async def tables(session: AsyncSession) -> dict[str, RatingSnapshot]:
        found = await session.scalars(select(RatingSnapshot).where(RatingSnapshot.method == "bt"))
        return {s.category: s for s in found}

    stored = run_db(settings, tables)
    assert {"hard", "math", "instruction-following", "creative-writing"} <= set(stored)
    assert stored["hard"].extras["category_votes"] == 2  # 7 criteria met; 5 is not hard
    assert stored["math"].extras["category_votes"] == 2
    assert stored["hard"].extras["judged_by"] == {f"judge / prompt {PROMPT_VERSION}": 2}


def test_without_a_judge_nothing_is_sent_and_no_judged_table_exists(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    settings = judge_settings(database_url, tmp_path, "")
    _models(settings, fake_upstream)
    _seed(database_url)
    before = len(fake_upstream.received)
    assert label_due(settings) == 0
    assert stored_labels(settings) == [] and len(fake_upstream.received) == before
    run_recompute(RecomputeConfig.from_settings(settings))

    async def categories(session: AsyncSession) -> set[str]:
        return set(await session.scalars(select(RatingSnapshot.category)))

    assert not {"hard", "math", "instruction-following", "creative-writing"} & run_db(
        settings, categories
    )


@pytest.mark.parametrize(
    ("judge_model", "error"),
    [
        ("garbage", "protocol"),
        ("huge:200000", "too_large"),
        ("hang", "timeout"),
        ("error500", "status"),
        ("html", ""),
        ("says:I would rather not answer in JSON.", "no JSON object"),
        ('says:{"criteria": "all of them", "math": "yes"}', "no verdict"),
        ("says:" + "{" * 5000, "no JSON object"),
    ],
)
def test_a_hostile_judge_leaves_the_label_missing_and_retries_later(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream, judge_model: str, error: str
) -> None:
    settings = judge_settings(
        database_url, tmp_path, judge_model, judge_base_url=fake_upstream.base_url,
        judge_timeout=1.0,
    )  # fmt: skip
    _models(settings, fake_upstream)
    _seed(database_url, 2)
    before = utcnow()
    assert label_due(settings) == 2
    rows = stored_labels(settings)
    assert len(rows) == 2
    for row in rows:
        assert row.labelled_at is None and row.hard_score is None and row.refusal is None
        assert row.attempts == 1 and row.given_up_at is None
        assert row.last_error and error in row.last_error
        # The first retry after judge_retry_seconds, not at once.
        assert row.next_attempt_at >= before + timedelta(seconds=29)
    assert label_due(settings) == 0  # nothing due before the backoff ends


def test_backoff_doubles_gives_up_and_relabel_tries_again(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    failing = judge_settings(
        database_url, tmp_path, "error500", judge_base_url=fake_upstream.base_url
    )
    _models(failing, fake_upstream)
    _seed(database_url, 1)
    engine = make_sync_engine(database_url)
    waits = []
    try:
        for _ in range(labels.MAX_ATTEMPTS):
            # Time passes: the retry is due now.
            with engine.begin() as conn:
                conn.execute(update(JudgeLabel).values(next_attempt_at=utcnow()))
            started = utcnow()
            assert label_due(failing) == 1
            (row,) = stored_labels(failing)
            if row.given_up_at is None:
                waits.append(round((row.next_attempt_at - started).total_seconds() / 30))
    finally:
        engine.dispose()
    assert waits == [1, 2, 4, 8, 16, 32, 64]
    (row,) = stored_labels(failing)
    assert row.given_up_at is not None and row.attempts == labels.MAX_ATTEMPTS

    async def relabel(session: AsyncSession) -> int:
        return await labels.relabel(session, since=None)

    assert run_db(failing, relabel) == 1
    working = judge_settings(database_url, tmp_path, "judge", judge_base_url=fake_upstream.base_url)
    assert label_due(working) == 1
    (row,) = stored_labels(working)
    assert row.labelled_at is not None and row.attempts == 1 and row.given_up_at is None

    # A new judge: relabelled battles keep their labels until the new ones arrive.
    assert run_db(working, relabel) == 1
    (row,) = stored_labels(working)
    assert row.stale and row.judge_model == "judge" and row.hard_score is not None
    fenced = judge_settings(
        database_url, tmp_path, "judge-fenced", judge_base_url=fake_upstream.base_url
    )
    assert label_due(fenced) == 1
    (row,) = stored_labels(fenced)
    assert not row.stale and row.judge_model == "judge-fenced"


def test_the_queue_is_bounded_and_only_votes_a_table_rates_enter_it(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    settings = judge_settings(
        database_url, tmp_path, "error500", judge_base_url=fake_upstream.base_url,
        judge_queue_size=3,
    )  # fmt: skip
    _models(settings, fake_upstream)
    _seed(database_url, 6)
    _seed(database_url, 2, counted=False)
    # Held back for a prompt past the duplicate limit only: the tables without deduplication
    # rate it, so the judged ones need its labels too.
    _seed(database_url, 1, counted=False, held_back_for=(DUPLICATE_PROMPT,))
    engine = make_sync_engine(database_url)
    try:
        with engine.begin() as conn:
            ids = dict(conn.execute(select(Model.name, Model.id)).all())
            # A battle answered but not voted on: still anonymous to its visitor.
            conn.execute(
                insert(Battle).values(
                    id="open-battle-not-voted",
                    model_a_id=ids[MODELS[0]],
                    model_b_id=ids[MODELS[1]],
                    session_hash="s",
                    status=BattleStatus.ready,
                )
            )
    finally:
        engine.dispose()
    assert label_due(settings) == 3
    assert len(stored_labels(settings)) == 3
    assert label_due(settings) == 0  # the three still wait (backoff): no room for more
    assert len(stored_labels(settings)) == 3

    working = judge_settings(
        database_url, tmp_path, "judge", judge_base_url=fake_upstream.base_url,
        judge_queue_size=3,
    )  # fmt: skip
    engine = make_sync_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(JudgeLabel).values(next_attempt_at=utcnow()))
    finally:
        engine.dispose()
    assert label_due(working) == 7
    rows = stored_labels(working)
    assert len(rows) == 7 and all(r.labelled_at is not None for r in rows)
    assert "open-battle-not-voted" not in {r.battle_id for r in rows}


def test_the_rate_limit_holds_across_workers(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    settings = judge_settings(
        database_url, tmp_path, "judge", judge_base_url=fake_upstream.base_url,
        judge_requests_per_minute=1.0,
    )  # fmt: skip
    _models(settings, fake_upstream)
    _seed(database_url, 3)
    before = len(fake_upstream.requests_for("judge"))

    async def two_workers() -> list[bool]:
        engine = make_async_engine(database_url)
        sessionmaker = make_sessionmaker(engine)
        try:
            async with UpstreamClient() as client:
                keys = KeyRing.from_settings(settings)
                workers = [JudgeWorker(settings, sessionmaker, client, keys) for _ in range(2)]
                first = await workers[0].start_one()
                await asyncio.gather(*workers[0].tasks)
                # The next slot is a minute away, whichever worker asks.
                try:
                    await asyncio.wait_for(workers[1].start_one(), 1.5)
                    second = True
                except TimeoutError:
                    second = False
                return [first, second]
        finally:
            await engine.dispose()

    assert asyncio.run(two_workers()) == [True, False]
    assert len(fake_upstream.requests_for("judge")) - before == 1
    assert sum(r.labelled_at is not None for r in stored_labels(settings)) == 1


def test_the_judge_url_passes_the_ssrf_guard_and_its_key_is_encrypted(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    settings = judge_settings(database_url, tmp_path, "", allow_private_endpoints=False)
    keys = KeyRing.from_settings(settings)

    async def set_to(session: AsyncSession, url: str, *, allow_private: bool) -> str:
        judge = await set_judge(
            session, base_url=url, model="judge", api_key="sk-judge-secret-1234",
            keys=keys, allow_private=allow_private, actor="test",
        )  # fmt: skip
        return judge.api_key_encrypted or ""

    for url in ("http://169.254.169.254/v1", fake_upstream.base_url):
        with pytest.raises(EndpointRefused):
            run_db(settings, lambda s, url=url: set_to(s, url, allow_private=False))  # type: ignore[misc]
    stored = run_db(settings, lambda s: set_to(s, fake_upstream.base_url, allow_private=True))
    assert stored and "sk-judge-secret" not in stored

    async def judge(session: AsyncSession) -> tuple[str | None, str]:
        found = await current_judge(session, settings=settings, keys=keys)
        assert found is not None
        return found.api_key, found.source

    assert run_db(settings, judge) == ("sk-judge-secret-1234", "set")
    # The key is sent to the judge, as to any endpoint.
    _models(settings, fake_upstream)
    _seed(database_url, 1)
    allowed = judge_settings(database_url, tmp_path, "", allow_private_endpoints=True)
    assert label_due(allowed) == 1
    assert fake_upstream.requests_for("judge")[-1].headers["authorization"] == (
        "Bearer sk-judge-secret-1234"
    )
