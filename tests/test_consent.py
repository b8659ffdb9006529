"""The release notice through real HTTP: shown before the first prompt when release is on, the
server's record of it stored with each battle, and texts released only from such battles."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.consent import DEFAULT_NOTICE, NOTICE_COOKIE
from arena.models import Battle, utcnow
from tests.conftest import Arena, make_settings
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream, start_battle

QUIET: dict[str, Any] = {"recompute_every_votes": 10**9, "recompute_every_seconds": 3600.0}


def _models(arena: Arena, upstream: FakeUpstream) -> None:
    arena.add_model("alpha-7b", upstream.base_url)
    arena.add_model("beta-13b", upstream.base_url)


def _voted(visitor: httpx.Client, prompt: str) -> str:
    battle_id = start_battle(visitor, prompt)
    assert read_stream(visitor, battle_id).end["status"] == "ready"
    assert visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"}).status_code == 200
    return battle_id


def _shown_at(arena: Arena) -> dict[str, Any]:
    async def work(session: AsyncSession) -> dict[str, Any]:
        rows = await session.execute(select(Battle.id, Battle.notice_shown_at))
        return {str(battle_id): shown for battle_id, shown in rows}

    return arena.db(work)


def test_notice_is_shown_and_recorded_only_for_sessions_served_it(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(release_conversations=True, **QUIET)
    _models(arena, fake_upstream)
    with arena.client() as reader, arena.client() as script, arena.client() as thief:
        served_from = utcnow().replace(microsecond=0)
        page = reader.get("/")
        assert page.status_code == 200
        assert "release-notice" in page.text and "Do not type anything" in page.text
        assert page.headers["cache-control"] == "private, no-store"
        record, session = reader.cookies[NOTICE_COOKIE], reader.cookies["arena_session"]
        read_battle = _voted(reader, "A question from a visitor who read the notice.")

        # A client that never loaded the page: its battles are never released.
        script_battle = _voted(script, "A question posted straight to the API.")
        thief.get("/api/me/battles")  # a session of its own
        thief_session = thief.cookies["arena_session"]
    # The record is bound to the session it was served to: copied to another session, or made
    # up, it counts for nothing. (The same cookies, sent the same way, count for their own.)
    sent = {
        "own": {"arena_session": session, NOTICE_COOKIE: record},
        "stolen": {"arena_session": thief_session, NOTICE_COOKIE: record},
        "forged": {"arena_session": session, NOTICE_COOKIE: record.split(".")[0] + "." + "0" * 64},
        "overlong": {"arena_session": session, NOTICE_COOKIE: record + "0" * 200},
    }
    battles = {}
    for name, cookies in sent.items():
        with arena.client(cookies=cookies) as client:
            battles[name] = _voted(client, f"A question sent with the {name} record.")
    with arena.client() as anyone:
        records = [json.loads(line) for line in anyone.get("/battles.jsonl").text.splitlines()]
    shown = _shown_at(arena)
    assert shown[read_battle] is not None and shown[battles["own"]] == shown[read_battle]
    assert served_from <= shown[read_battle] <= utcnow()
    assert shown[script_battle] is None
    assert [shown[battles[name]] for name in ("stolen", "forged", "overlong")] == [None] * 3

    statuses = [r["text_status"] for r in records]
    assert sorted(statuses) == ["released"] * 2 + ["withheld"] * 4
    texts = json.dumps([r for r in records if r["text_status"] == "released"])
    assert "who read the notice" in texts and "the own record" in texts
    withheld = json.dumps([r for r in records if r["text_status"] == "withheld"])
    assert '"conversation_a": []' in withheld and "question" not in withheld


def test_without_release_no_notice_is_shown_or_recorded(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(**QUIET)
    _models(arena, fake_upstream)
    with arena.client() as visitor:
        page = visitor.get("/")
        assert page.status_code == 200 and "release-notice" not in page.text
        assert NOTICE_COOKIE not in visitor.cookies
        battle_id = _voted(visitor, "A question while nothing is released.")
    assert _shown_at(arena) == {battle_id: None}


def test_battles_from_before_release_stay_unreleased_and_a_new_notice_needs_a_new_read(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    from tests.conftest import start_arena

    secret = Fernet.generate_key().decode()
    quiet = make_settings(database_url, tmp_path, secret_key=secret, **QUIET)
    arena = start_arena(quiet)
    _models(arena, fake_upstream)
    released = {"release_conversations": True, "secret_key": secret, **QUIET}
    try:
        with arena.client() as visitor:
            visitor.get("/")
            before = _voted(visitor, "Asked before anything was released.")
            arena.server.stop()

            # The operator switches release on: what came before stays unreleased.
            first_notice = start_arena(make_settings(database_url, tmp_path, **released))
            visitor.base_url = httpx.URL(first_notice.url)
            records = visitor.get("/battles.jsonl").text
            assert "released" not in records and "Asked before" not in records
            visitor.get("/")
            under_first = _voted(visitor, "Asked after reading the first notice.")
            first_notice.server.stop()

            # A reworded notice: the record of the old one does not vouch for it.
            notice_file = tmp_path / "notice.txt"
            notice_file.write_text("We publish everything.\n\nReally everything, <b>bold</b>.")
            second_notice = start_arena(
                make_settings(database_url, tmp_path, release_notice_file=notice_file, **released)
            )
            visitor.base_url = httpx.URL(second_notice.url)
            stale = _voted(visitor, "Asked with a record of the old notice.")
            page = visitor.get("/")
            assert "<p>We publish everything.</p>" in page.text
            assert "Really everything, &lt;b&gt;bold&lt;/b&gt;." in page.text
            assert DEFAULT_NOTICE.split(".")[0] not in page.text
            fresh = _voted(visitor, "Asked after reading the new notice.")
            second_notice.server.stop()
    finally:
        arena.server.stop()
    shown = _shown_at(arena)
    assert shown[before] is None and shown[stale] is None
    assert shown[under_first] is not None and shown[fresh] is not None
    assert shown[fresh] - shown[under_first] >= timedelta(0)


def test_an_unreadable_notice_file_is_named_at_start(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    for path, words in ((tmp_path / "missing.txt", "cannot be read"), (empty, "is empty")):
        with pytest.raises(ValidationError, match=words):
            make_settings("sqlite:///unused.db", tmp_path, release_notice_file=path)
