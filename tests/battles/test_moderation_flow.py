"""Moderation through the API, on both databases, with the fake upstream's /moderations as the
moderation endpoint: prompts refused before any model sees them, answers withheld, the endpoint
down (hanging, 500, garbage) stopping battles or not, every refusal counted for the operator."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.leaderboard.release import text_released
from arena.models import Battle, BattleStatus, ModerationRefusal, utcnow
from arena.moderation import RELOAD_CHECK_SECONDS, WITHHELD_MESSAGE
from tests.conftest import Arena
from tests.fake_upstream import (
    MOD_500,
    MOD_GARBAGE,
    MOD_HANG,
    MOD_WRONG_SHAPE,
    FakeUpstream,
    answer_for,
)
from tests.sse import read_stream, start_battle

ADMIN = {"Authorization": "Bearer admin-token-for-tests-0123456789"}
TIMEOUT = 0.5


def _blocklist(tmp_path: Path) -> Path:
    path = tmp_path / "blocklist.txt"
    path.write_text("# words and phrases\nzorblax\nforbidden phrase\nre:\\bsecret-\\d{4}\\b\n")
    return path


def _moderated_arena(
    arena_factory: Any, upstream: FakeUpstream, tmp_path: Path, **overrides: Any
) -> Arena:
    settings: dict[str, Any] = {
        "moderation_url": f"{upstream.base_url}/moderations",
        "moderation_api_key": "mod-key-123",
        "moderation_timeout": TIMEOUT,
        "moderation_blocklist_file": _blocklist(tmp_path),
        "metrics": True,
    }
    settings.update(overrides)
    arena: Arena = arena_factory(**settings)
    return arena


def _counts(arena: Arena) -> dict[tuple[str, str], int]:
    async def work(session: AsyncSession) -> dict[tuple[str, str], int]:
        rows = await session.execute(
            select(ModerationRefusal.stage, ModerationRefusal.reason, func.count()).group_by(
                ModerationRefusal.stage, ModerationRefusal.reason
            )
        )
        return {(stage, reason): int(n) for stage, reason, n in rows}

    return arena.db(work)


def _battles(arena: Arena) -> int:
    async def work(session: AsyncSession) -> int:
        return int(await session.scalar(select(func.count(Battle.id))) or 0)

    return arena.db(work)


def _chat_prompts(upstream: FakeUpstream, since: int) -> list[str]:
    return [
        str(r.body["messages"][-1]["content"])
        for r in upstream.received[since:]
        if r.path.endswith("/chat/completions")
    ]


def _metric(exposition: str, series: str) -> float:
    """The value of one series of a Prometheus exposition; 0 when it is absent."""
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def _exposition(arena: Arena) -> str:
    with arena.client() as reader:
        return reader.get("/metrics").text


def _refused(visitor: httpx.Client, prompt: str, status: int) -> str:
    response = visitor.post("/api/battles", json={"prompt": prompt})
    assert response.status_code == status, response.text
    return str(response.json()["detail"])


def test_prompts_refused_before_any_model_sees_them(
    arena_factory: Any, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    arena = _moderated_arena(arena_factory, fake_upstream, tmp_path)
    arena.add_model("alpha-7b", fake_upstream.base_url, "normal", organization="Alpha Labs")
    arena.add_model("beta-13b", fake_upstream.base_url, "normal", organization="Beta Inc")
    since = len(fake_upstream.received)
    metrics_before = _exposition(arena)
    with arena.client() as visitor:
        # Passes: the endpoint was asked, with the key and the model, and the battle runs.
        battle_id = start_battle(visitor, "Name a prime number")
        asked = [r for r in fake_upstream.received if r.path.endswith("/moderations")][-1]
        assert asked.body == {"input": "Name a prime number", "model": "omni-moderation-latest"}
        assert asked.headers["authorization"] == "Bearer mod-key-123"
        assert read_stream(visitor, battle_id).end == {"type": "end", "status": "ready"}

        # Refused by the blocklist (a word in another case and with a zero-width space, a
        # phrase, a pattern), by the endpoint, and while the endpoint is down.
        for prompt in ("Tell me about ZORB\u200bLAX", "a Forbidden  phrase here", "secret-1234"):
            assert "word or phrase this arena does not accept" in _refused(visitor, prompt, 422)
        assert "flagged it (hate)" in _refused(visitor, "say FLAG-hate things", 422)
        for broken in (MOD_500, MOD_GARBAGE, MOD_WRONG_SHAPE):
            assert "moderation service is not answering" in _refused(visitor, broken, 503)
        started = time.monotonic()
        assert "not answering" in _refused(visitor, f"please {MOD_HANG}", 503)
        assert time.monotonic() - started < TIMEOUT + 2  # bounded by ARENA_MODERATION_TIMEOUT

        # Nothing of a refused prompt was stored or reached a model: one battle, one prompt.
        assert _battles(arena) == 1
        assert _chat_prompts(fake_upstream, since) == ["Name a prime number"] * 2

        # A follow-up is refused the same way; the battle stays as it was and takes its vote.
        turn = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "zorblax?"})
        assert turn.status_code == 422 and "does not accept" in turn.json()["detail"]
        view = visitor.get(f"/api/battles/{battle_id}").json()
        assert view["status"] == "ready" and view["turns"] == 1
        vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"})
        assert vote.status_code == 200, vote.text

    assert _counts(arena) == {
        ("prompt", "blocklist"): 4,
        ("prompt", "flagged:hate"): 1,
        ("prompt", "unavailable"): 4,
    }
    # The operator reads the counts on the console and in /metrics.
    with arena.client() as operator:
        signed_in = operator.post("/admin/login", data={"token": ADMIN["Authorization"][7:]})
        assert signed_in.status_code in (200, 303)
        page = operator.get("/admin").text
        assert 'id="moderation-refusals"' in page
        assert "<td>prompt</td><td>flagged:hate</td><td>1</td>" in page
        assert "<td>prompt</td><td>blocklist</td><td>4</td>" in page
    metrics_after = _exposition(arena)
    for series, more in (
        ('arena_moderation_refusals_total{reason="flagged:hate",stage="prompt"}', 1),
        ('arena_moderation_refusals_total{reason="blocklist",stage="prompt"}', 4),
        ('arena_moderation_refusals_total{reason="unavailable",stage="prompt"}', 4),
        ('arena_moderation_unavailable_total{stage="prompt"}', 4),
    ):
        assert _metric(metrics_after, series) - _metric(metrics_before, series) == more, series


def test_flagged_answers_end_the_battle_unvotable_and_unreleased(
    arena_factory: Any, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    arena = _moderated_arena(arena_factory, fake_upstream, tmp_path)
    arena.add_model("alpha-7b", fake_upstream.base_url, "says:Fine words FLAG-violence here")
    arena.add_model("beta-13b", fake_upstream.base_url, "normal")
    with arena.client() as visitor:
        battle_id = start_battle(visitor, "Tell me a story")
        stream = read_stream(visitor, battle_id)
        withheld = [e for e in stream.events if e["type"] == "withheld"]
        # Both sides alike: which one was flagged is not the visitor's to know.
        assert withheld == [
            {"side": "a", "type": "withheld", "message": WITHHELD_MESSAGE},
            {"side": "b", "type": "withheld", "message": WITHHELD_MESSAGE},
        ]
        assert stream.end == {"type": "end", "status": "failed"}

        view = visitor.get(f"/api/battles/{battle_id}").json()
        assert view["status"] == "failed"
        answers = [m for m in view["messages"] if m["side"] != "user"]
        assert answers and all(
            m["content"] == "" and m["error"] == WITHHELD_MESSAGE for m in answers
        )
        assert "FLAG-violence" not in str(view) and answer_for("Tell me a story") not in str(view)
        replayed = read_stream(visitor, battle_id)
        assert [e["type"] for e in replayed.events] == ["withheld", "withheld", "end"]
        vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
        assert vote.status_code == 409

        # A clean battle of the same pair, for the release check below.
        clean_id = start_battle(visitor, "A clean question")

    asked = [r for r in fake_upstream.received if r.path.endswith("/moderations")]
    assert any(isinstance(r.body["input"], list) and len(r.body["input"]) == 2 for r in asked)

    async def released(session: AsyncSession) -> tuple[set[str], list[str], BattleStatus]:
        # Both as if their visitors had seen the release notice: only the flag withholds one.
        await session.execute(
            update(Battle)
            .where(Battle.id.in_([battle_id, clean_id]))
            .values(notice_shown_at=utcnow())
        )
        ids = set(await session.scalars(select(Battle.id).where(text_released())))
        battle = await session.get_one(Battle, battle_id)
        return ids, list(battle.flags), battle.status

    released_ids, flags, status = arena.db(released)
    assert clean_id in released_ids and battle_id not in released_ids
    assert "moderated" in flags and status == BattleStatus.failed
    assert _counts(arena) == {("answer", "flagged:violence"): 1}


def test_an_endpoint_down_lets_battles_go_on_when_the_operator_says_so(
    arena_factory: Any, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    arena = _moderated_arena(
        arena_factory, fake_upstream, tmp_path, moderation_when_down="continue"
    )
    arena.add_model("alpha-7b", fake_upstream.base_url, f"says:an answer {MOD_GARBAGE}")
    arena.add_model("beta-13b", fake_upstream.base_url, "says:plain")
    with arena.client() as visitor:
        started = time.monotonic()
        battle_id = start_battle(visitor, f"a question {MOD_HANG}")
        assert time.monotonic() - started < TIMEOUT + 2
        # The answers' check fails too (garbage): they go on, unmoderated, and can be voted on.
        assert read_stream(visitor, battle_id).end == {"type": "end", "status": "ready"}
        # The blocklist is local: it still refuses.
        assert "does not accept" in _refused(visitor, "zorblax", 422)

        # The operator edits the file: within seconds the new list is in use, without a restart.
        blocklist = arena.settings.moderation_blocklist_file
        assert blocklist is not None
        blocklist.write_text("quibble\n")
        stamp = time.time_ns() + 1_000_000_000  # a new modification time even on a coarse clock
        os.utime(blocklist, ns=(stamp, stamp))
        time.sleep(RELOAD_CHECK_SECONDS + 0.2)
        assert "does not accept" in _refused(visitor, "a quibble", 422)
        start_battle(visitor, "zorblax is fine now")
    assert _counts(arena) == {("prompt", "blocklist"): 2}


def test_the_address_guard_stands_between_the_arena_and_the_moderation_endpoint(
    arena_factory: Any, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """A loopback moderation URL without ARENA_ALLOW_PRIVATE_ENDPOINTS is never called: the
    endpoint counts as down, and battles stop."""
    arena = _moderated_arena(arena_factory, fake_upstream, tmp_path, allow_private_endpoints=False)
    before = len(fake_upstream.received)
    with arena.client() as visitor:
        assert "not answering" in _refused(visitor, "hello there", 503)
    assert [r for r in fake_upstream.received[before:] if r.path.endswith("/moderations")] == []
    assert _counts(arena) == {("prompt", "unavailable"): 1}
