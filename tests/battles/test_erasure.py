"""Erasure through real HTTP and the operator's CLI: a visitor deletes a battle, its texts leave
the database and every later export, its vote stays counted; the My battles list."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from arena.cli import app as cli
from arena.models import Battle, Message, Vote
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, answer_for
from tests.leaderboard.conftest import latest_board, recompute
from tests.sse import read_stream, start_battle

SECRET_PROMPT = "My neighbour Jo Example at 12 Elm Street keeps bees; write her a short poem."
OTHER_PROMPT = "Name three prime numbers larger than one hundred."
NAMES = ("alpha-7b", "beta-13b", "Alpha Labs", "Beta Inc")


def _release_arena(arena_factory: Callable[..., Arena], upstream: FakeUpstream) -> Arena:
    arena = arena_factory(
        release_conversations=True,
        recompute_every_votes=10**9,
        recompute_every_seconds=3600.0,
        bootstrap_rounds=0,
    )
    arena.add_model("alpha-7b", upstream.base_url, organization="Alpha Labs")
    arena.add_model("beta-13b", upstream.base_url, organization="Beta Inc")
    return arena


def _read_the_notice(visitor: httpx.Client) -> None:
    page = visitor.get("/")
    assert page.status_code == 200 and "release-notice" in page.text


def _voted_battle(visitor: httpx.Client, prompt: str, winner: str = "model_a") -> str:
    battle_id = start_battle(visitor, prompt)
    assert read_stream(visitor, battle_id).end["status"] == "ready"
    vote = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": winner})
    assert vote.status_code == 200, vote.text
    return battle_id


def _stored_texts(arena: Arena) -> str:
    """Every text the database holds in messages, joined: what an erasure must empty."""

    async def work(session: AsyncSession) -> str:
        rows = await session.execute(select(Message.content, Message.error))
        return "\n".join(f"{content}\n{error or ''}" for content, error in rows)

    return arena.db(work)


def _jsonl(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _counted(client: httpx.Client, newer_than: int | None = None) -> tuple[int, int, str]:
    """The latest snapshot's id, how many votes it counted and the hash naming them."""
    snapshot = latest_board(client, newer_than=newer_than)["snapshot"]
    return snapshot["id"], snapshot["n_votes"], snapshot["vote_set_hash"]


def test_erasure_removes_texts_from_database_and_exports_vote_stays_counted(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = _release_arena(arena_factory, fake_upstream)
    with arena.client() as visitor:
        _read_the_notice(visitor)
        erased_id = _voted_battle(visitor, SECRET_PROMPT, "model_a")
        kept_id = _voted_battle(visitor, OTHER_PROMPT, "tie")
        assert recompute(arena).ran
        snapshot_before, *counted_before = _counted(visitor)
        assert counted_before[0] == 2
        before = {r["vote_id"]: r for r in _jsonl(visitor, "/battles.jsonl")}
        assert [r["text_status"] for r in before.values()] == ["released", "released"]
        # Released redacted: the street address is a placeholder, the rest is the prompt.
        assert SECRET_PROMPT.replace("12 Elm Street", "[ADDRESS]") in json.dumps(
            list(before.values()), ensure_ascii=False
        )

        deleted = visitor.delete(f"/api/battles/{erased_id}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["battle_id"] == erased_id and deleted.json()["erased_at"]
        # Deleting again changes nothing and is not an error.
        again = visitor.delete(f"/api/battles/{erased_id}")
        assert again.status_code == 200 and again.json() == deleted.json()

        stored = _stored_texts(arena)
        assert SECRET_PROMPT not in stored and answer_for(SECRET_PROMPT) not in stored
        assert OTHER_PROMPT in stored  # the other battle is untouched

        # The visitor's own view: the turns remain, their words do not.
        view = visitor.get(f"/api/battles/{erased_id}").json()
        assert view["erased_at"] == deleted.json()["erased_at"]
        assert view["status"] == "voted" and view["winner"] == "model_a"
        assert [m["content"] for m in view["messages"]] == ["", "", ""]

        after = _jsonl(visitor, "/battles.jsonl")
        assert [r["vote_id"] for r in after] == list(before)  # the vote is still exported
        erased_record = next(r for r in after if r["text_status"] == "erased")
        assert erased_record["conversation_a"] == [] and erased_record["conversation_b"] == []
        assert erased_record["winner"] == "model_a"
        assert {r["text_status"] for r in after} == {"erased", "released"}
        everything = "\n".join(
            visitor.get(path).text
            for path in ("/battles.jsonl", "/battles.csv", "/preferences.jsonl")
        )
        assert "Jo Example" not in everything and "12 Elm Street" not in everything
        assert OTHER_PROMPT in everything
        table = list(csv.DictReader(io.StringIO(visitor.get("/battles.csv").text)))
        assert sorted(row["text_status"] for row in table) == ["erased", "released"]
        assert next(r for r in table if r["text_status"] == "erased")["prompt"] == ""

        # Ratings do not move: a recompute counts the same votes.
        assert recompute(arena).ran
        snapshot_after, *counted_after = _counted(visitor, newer_than=snapshot_before)
        assert snapshot_after > snapshot_before and counted_after == counted_before

    async def rows(session: AsyncSession) -> tuple[Any, ...]:
        battle = await session.get_one(Battle, erased_id)
        vote = await session.scalar(select(Vote).where(Vote.battle_id == erased_id))
        kept = await session.get_one(Battle, kept_id)
        assert vote is not None
        return battle.erased_at, vote.counted, vote.winner.value, kept.erased_at, battle.language

    erased_at, counted, winner, kept_erased, language = arena.db(rows)
    assert erased_at is not None and counted is True and winner == "model_a"
    assert kept_erased is None and language == "English"


def test_another_session_cannot_delete_and_learns_nothing(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url)
    arena.add_model("beta-13b", fake_upstream.base_url)
    with arena.client() as owner, arena.client() as stranger:
        battle_id = _voted_battle(owner, SECRET_PROMPT)
        refused = stranger.delete(f"/api/battles/{battle_id}")
        missing = stranger.delete("/api/battles/no-such-battle-id-000000000")
        # The same answer as for an id that does not exist: existence is not revealed.
        assert refused.status_code == missing.status_code == 404
        assert refused.json() == missing.json()
        assert owner.delete("/api/battles/no-such-battle-id-000000000").status_code == 404
        assert stranger.get("/api/me/battles").json() == {"battles": [], "counted_votes": 0}
    assert SECRET_PROMPT in _stored_texts(arena)


def test_an_erased_battle_takes_no_vote_follow_up_or_stream(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url)
    arena.add_model("beta-13b", fake_upstream.base_url)
    with arena.client() as visitor:
        ready_id = start_battle(visitor, SECRET_PROMPT)
        assert read_stream(visitor, ready_id).end["status"] == "ready"
        assert visitor.delete(f"/api/battles/{ready_id}").status_code == 200
        vote = visitor.post(f"/api/battles/{ready_id}/vote", json={"winner": "tie"})
        assert vote.status_code == 409 and "deleted" in vote.json()["detail"]
        follow_up = visitor.post(f"/api/battles/{ready_id}/turns", json={"prompt": "And more?"})
        assert follow_up.status_code == 409 and "deleted" in follow_up.json()["detail"]

        # Deleted before its first turn streamed: nothing is ever asked of the models for it.
        asked_before = len(fake_upstream.received)
        pending_id = start_battle(visitor, OTHER_PROMPT)
        assert visitor.delete(f"/api/battles/{pending_id}").status_code == 200
        stream = visitor.get(f"/api/battles/{pending_id}/stream")
        assert stream.status_code == 409 and "deleted" in stream.json()["detail"]
        listed = visitor.get("/api/me/battles").json()["battles"]
    assert not any(
        OTHER_PROMPT in json.dumps(r.body) for r in fake_upstream.received[asked_before:]
    )
    assert [b["erased_at"] is not None for b in listed] == [True, True]
    stored = _stored_texts(arena)
    assert SECRET_PROMPT not in stored and OTHER_PROMPT not in stored

    async def votes(session: AsyncSession) -> int:
        return len((await session.scalars(select(Vote))).all())

    assert arena.db(votes) == 0


def test_a_streaming_battle_is_erased_only_once_its_answers_are_in(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url, "slow:0.1")
    arena.add_model("beta-13b", fake_upstream.base_url, "slow:0.1")
    with arena.client() as visitor:
        battle_id = start_battle(visitor, SECRET_PROMPT)
        streamed: list[str] = []
        reader = threading.Thread(
            target=lambda: streamed.append(read_stream(visitor, battle_id).end["status"])
        )
        reader.start()
        try:
            while visitor.get(f"/api/battles/{battle_id}").json()["status"] == "pending":
                pass
            refused = visitor.delete(f"/api/battles/{battle_id}")
        finally:
            reader.join(timeout=30)
        assert refused.status_code == 409 and "still arriving" in refused.json()["detail"]
        assert streamed == ["ready"]
        assert visitor.delete(f"/api/battles/{battle_id}").status_code == 200
    assert SECRET_PROMPT not in _stored_texts(arena)


def test_my_battles_lists_own_battles_newest_first_names_only_after_the_vote(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url, organization="Alpha Labs")
    arena.add_model("beta-13b", fake_upstream.base_url, organization="Beta Inc")
    long_prompt = "Tell me about tides. " * 30
    with arena.client() as visitor, arena.client() as other:
        first = start_battle(visitor, long_prompt)
        assert read_stream(visitor, first).end["status"] == "ready"
        second = start_battle(visitor, OTHER_PROMPT)
        assert read_stream(visitor, second).end["status"] == "ready"
        start_battle(other, "Somebody else's question about the moon")

        listed = visitor.get("/api/me/battles")
        assert listed.status_code == 200
        for name in NAMES:
            assert name not in listed.text, f"{name} is listed before the vote"
        battles = listed.json()["battles"]
        assert [b["battle_id"] for b in battles] == [second, first]
        assert battles[0]["prompt"] == OTHER_PROMPT and battles[0]["status"] == "ready"
        assert battles[1]["prompt"] == long_prompt[:200]
        assert all(b["models"] is None and b["winner"] is None for b in battles)

        vote = visitor.post(f"/api/battles/{first}/vote", json={"winner": "model_b"})
        assert vote.status_code == 200
        voted = visitor.get("/api/me/battles").json()["battles"][1]
        assert voted["status"] == "voted" and voted["winner"] == "model_b"
        assert voted["models"] == vote.json()
        assert visitor.get("/api/me/battles").json()["battles"][0]["models"] is None

        assert (
            visitor.get("/api/me/battles", params={"limit": 1}).json()["battles"][0]["battle_id"]
            == second
        )
        too_many = visitor.get("/api/me/battles", params={"limit": 10_000})
        assert too_many.status_code == 422 and "limit" in too_many.json()["detail"]

        assert visitor.delete(f"/api/battles/{second}").status_code == 200
        erased = visitor.get("/api/me/battles").json()["battles"][0]
        assert erased["prompt"] == "" and erased["erased_at"] is not None
        assert [b["prompt"] for b in other.get("/api/me/battles").json()["battles"]] == [
            "Somebody else's question about the moon"
        ]


def _run_cli(args: list[str], arena: Arena, tmp_path: Path) -> Any:
    env = {
        "ARENA_DATABASE_URL": arena.settings.database_url,
        "ARENA_DATA_DIR": str(tmp_path),
        "ARENA_SECRET_KEY": arena.settings.resolved_secret_key(),
    }
    return CliRunner().invoke(cli, args, env=env)


def test_operator_erases_by_battle_id_and_by_session(
    arena: Arena,
    fake_upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    arena.add_model("alpha-7b", fake_upstream.base_url)
    arena.add_model("beta-13b", fake_upstream.base_url)
    with arena.client() as one, arena.client() as two:
        by_id = _voted_battle(one, SECRET_PROMPT)
        kept = _voted_battle(one, OTHER_PROMPT)
        first_of_two = _voted_battle(two, "Session two asks about volcanoes.")
        second_of_two = start_battle(two, "Session two asks about glaciers.")
        assert read_stream(two, second_of_two).end["status"] == "ready"
        session_two = two.cookies["arena_session"]

    # "--": a battle id may start with "-", which would otherwise read as an option.
    unknown = _run_cli(["battles", "erase", "--", by_id, "no-such-battle"], arena, tmp_path)
    assert unknown.exit_code == 2 and "no-such-battle" in unknown.output
    assert SECRET_PROMPT in _stored_texts(arena)  # all or nothing

    assert _run_cli(["battles", "erase"], arena, tmp_path).exit_code == 2

    done = _run_cli(["battles", "erase", "--", by_id], arena, tmp_path)
    assert done.exit_code == 0, done.output
    assert f"{by_id}: erased at" in done.output
    repeated = _run_cli(["battles", "erase", "--", by_id], arena, tmp_path)
    assert f"{by_id}: already erased" in repeated.output

    by_session = _run_cli(["battles", "erase", "--session", session_two], arena, tmp_path)
    assert by_session.exit_code == 0, by_session.output
    assert first_of_two in by_session.output and second_of_two in by_session.output
    stranger = _run_cli(["battles", "erase", "--session", "x" * 32], arena, tmp_path)
    assert stranger.exit_code == 2 and "No battle was started" in stranger.output

    stored = _stored_texts(arena)
    assert SECRET_PROMPT not in stored and "volcanoes" not in stored and "glaciers" not in stored
    assert OTHER_PROMPT in stored

    async def erased(session: AsyncSession) -> dict[str, bool]:
        rows = await session.execute(select(Battle.id, Battle.erased_at))
        return {battle_id: at is not None for battle_id, at in rows}

    assert arena.db(erased) == {by_id: True, kept: False, first_of_two: True, second_of_two: True}

    async def languages(session: AsyncSession) -> set[str]:
        rows = await session.scalars(select(Battle.language).where(Battle.erased_at.is_not(None)))
        return set(rows)

    # Erased before any recompute tagged them: tagged from their texts on the way out.
    assert arena.db(languages) == {"English"}

    async def counted(session: AsyncSession) -> int:
        return len((await session.scalars(select(Vote).where(Vote.counted.is_(True)))).all())

    assert arena.db(counted) == 3
