"""The operator's review: flagged sessions and excluded votes, behind the admin token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Battle, BattleStatus, FlaggedSession, RatingSnapshot, Vote, Winner, utcnow
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream

ADMIN = {"Authorization": "Bearer admin-token-for-tests-0123456789"}


@dataclass(frozen=True)
class Seeded:
    """A decisive vote to seed: who cast it, from which address, who won, and its flags."""

    voter: str
    winner: str
    loser: str
    address: str = ""
    flags: tuple[str, ...] = ()


def _seed_rated_votes(arena: Arena, ids: dict[str, int], votes: list[Seeded]) -> None:
    """Ratings of strong 1200, middle 1000, weak 800, and the votes on alternating sides."""
    now = utcnow()

    async def seed(session: AsyncSession) -> None:
        session.add(
            RatingSnapshot(
                method="bt",
                category="all",
                vote_set_hash="x",
                n_votes=1000,
                rows=[
                    {"model": "strong", "rating": 1200.0, "votes": 400},
                    {"model": "middle", "rating": 1000.0, "votes": 400},
                    {"model": "weak", "rating": 800.0, "votes": 400},
                ],
            )
        )
        for n, vote in enumerate(votes):
            battle_id = f"seeded-{n}"
            session.add(
                Battle(
                    id=battle_id,
                    model_a_id=ids[vote.winner] if n % 2 else ids[vote.loser],
                    model_b_id=ids[vote.loser] if n % 2 else ids[vote.winner],
                    session_hash=vote.voter,
                    ip_hash=vote.address,
                    status=BattleStatus.voted,
                )
            )
            session.add(
                Vote(
                    battle_id=battle_id,
                    winner=Winner.model_a if n % 2 else Winner.model_b,
                    session_hash=vote.voter,
                    ip_hash=vote.address,
                    created_at=now,
                    counted=not vote.flags,
                    flags=list(vote.flags),
                )
            )

    arena.db(seed)


def _three_models(arena: Arena, fake_upstream: FakeUpstream) -> dict[str, int]:
    return {
        name: arena.add_model(name, fake_upstream.base_url, "normal", organization="Org")
        for name in ("strong", "middle", "weak")
    }


def test_flags_need_the_admin_token(arena: Arena) -> None:
    with arena.client() as client:
        assert client.get("/api/admin/flags").status_code == 401
        wrong = client.get("/api/admin/flags", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.post("/api/admin/rigging-scan").status_code == 401
        empty = client.get("/api/admin/flags", headers=ADMIN)
    assert empty.status_code == 200
    assert empty.json() == {
        "counts": {
            "total": 0,
            "counted": 0,
            "excluded": 0,
            "by_reason": {},
            "reasons": empty.json()["counts"]["reasons"],
        },
        "sessions": [],
        "votes": [],
        "next_before_id": None,
    }


def test_a_rigging_session_is_flagged_and_its_votes_excluded(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(rigging_min_votes=8, rigging_alpha=1e-4)
    ids = _three_models(arena, fake_upstream)
    # "rigger" picks "weak" in all of its 12 battles; "honest" follows the ratings.
    votes = [Seeded("rigger", "weak", opponent) for opponent in ["strong", "middle"] * 6]
    votes += [Seeded("honest", "strong", "weak"), Seeded("honest", "middle", "weak")] * 6
    _seed_rated_votes(arena, ids, votes)
    with arena.client() as client:
        scan = client.post("/api/admin/rigging-scan", headers=ADMIN)
        assert scan.status_code == 200, scan.text
        assert scan.json() == {"sessions_tested": 2, "sessions_flagged": 1, "votes_excluded": 12}
        again = client.post("/api/admin/rigging-scan", headers=ADMIN).json()
        assert again["sessions_flagged"] == 0 and again["votes_excluded"] == 0
        report = client.get("/api/admin/flags", headers=ADMIN, params={"limit": 5}).json()
        public = client.get("/api/votes/counts").json()

    assert [s["session_hash"] for s in report["sessions"]] == ["rigger"]
    assert report["sessions"][0]["votes"] == 12
    assert "weak won 12 of" in report["sessions"][0]["detail"]
    assert len(report["votes"]) == 5 and report["next_before_id"] == report["votes"][-1]["vote_id"]
    assert all(v["flags"] == ["suspicious_session"] for v in report["votes"])
    assert public["counted"] == 12 and public["by_reason"] == {"suspicious_session": 12}

    async def stored(session: AsyncSession) -> tuple[int, int, int]:
        votes = list(await session.scalars(select(Vote)))
        flagged = list(await session.scalars(select(FlaggedSession)))
        return len(votes), sum(v.counted for v in votes), len(flagged)

    # Nothing deleted: all 24 votes are still there, 12 counted, one flagged session.
    assert arena.db(stored) == (24, 12, 1)


def test_spread_sessions_are_flagged_by_the_pooled_scan_and_their_neighbours_kept(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(rigging_min_votes=8, rigging_alpha=1e-4)
    ids = _three_models(arena, fake_upstream)
    # (session, address, winner, loser): every session is far below the 8 votes the
    # per-session test needs.
    votes: list[tuple[str, str, str, str]] = []
    for i in range(12):  # twelve sessions behind one address, always for "weak"
        votes += [(f"proxy{i}", "attacker-ip", "weak", "strong")]
        votes += [(f"proxy{i}", "attacker-ip", "weak", "middle")]
    for i in range(3):  # honest people behind the same address
        votes += [(f"neighbour{i}", "attacker-ip", "strong", "weak")]
        votes += [(f"neighbour{i}", "attacker-ip", "middle", "strong")]
    for i in range(10):  # ten sessions on addresses of their own, three times for "weak"
        for loser in ("middle", "strong", "middle"):
            votes += [(f"alike{i}", f"home-{i}", "weak", loser)]
    for i in range(20):  # a campus behind one NAT, voting much as the ratings expect
        votes += [(f"campus{i}", "campus-ip", "strong", "weak")]
        votes += [(f"campus{i}", "campus-ip", "middle", "weak")]
        votes += [(f"campus{i}", "campus-ip", *(("strong", "middle")[:: 1 - 2 * (i % 2)]))]
    seeded = [Seeded(voter, winner, loser, address) for voter, address, winner, loser in votes]
    _seed_rated_votes(arena, ids, seeded)
    with arena.client() as client:
        scan = client.post("/api/admin/rigging-scan", headers=ADMIN)
        assert scan.status_code == 200, scan.text
        assert scan.json() == {"sessions_tested": 45, "sessions_flagged": 22, "votes_excluded": 54}
        again = client.post("/api/admin/rigging-scan", headers=ADMIN).json()
        assert again["sessions_flagged"] == 0 and again["votes_excluded"] == 0
        report = client.get("/api/admin/flags", headers=ADMIN, params={"limit": 100}).json()
        public = client.get("/api/votes/counts").json()

    reasons = {s["session_hash"]: s["reason"] for s in report["sessions"]}
    assert reasons == {
        **{f"proxy{i}": "pooled_address" for i in range(12)},
        **{f"alike{i}": "pooled_alike" for i in range(10)},
    }
    details = {s["reason"]: s["detail"] for s in report["sessions"]}
    assert "one of 12 sessions from one address" in details["pooled_address"]
    assert "on weak all went for it" in details["pooled_address"]
    assert "one of 10 sessions anywhere" in details["pooled_alike"]
    assert public["by_reason"] == {"pooled_address": 24, "pooled_alike": 30}
    assert set(public["reasons"]) >= {"pooled_address", "pooled_alike"}
    assert public["counted"] == len(votes) - 54

    async def counted_sessions(session: AsyncSession) -> set[str]:
        return set(await session.scalars(select(Vote.session_hash).where(Vote.counted)))

    # The campus and the attacker's neighbours keep every vote.
    kept = arena.db(counted_sessions)
    assert {f"campus{i}" for i in range(20)} | {f"neighbour{i}" for i in range(3)} == kept


def test_the_operator_confirms_or_dismisses_a_flagged_session(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(rigging_min_votes=8, rigging_alpha=1e-4)
    ids = _three_models(arena, fake_upstream)
    # Two sessions pick "weak" every time; one of them also voted once too fast.
    votes = [Seeded(voter, "weak", "strong") for voter in ("fan-1", "fan-2") for _ in range(12)]
    votes[12] = Seeded("fan-2", "weak", "strong", flags=("too_fast",))
    _seed_rated_votes(arena, ids, votes)
    with arena.client() as client:
        scan = client.post("/api/admin/rigging-scan", headers=ADMIN).json()
        assert scan["sessions_flagged"] == 2 and scan["votes_excluded"] == 24
        assert client.get("/api/votes/counts").json()["counted"] == 0

        def decide(session_hash: str, decision: str, note: str = "") -> httpx.Response:
            return client.post(
                "/api/admin/flags/decision",
                json={
                    "session_hash": session_hash,
                    "reason": "suspicious_session",
                    "decision": decision,
                    "note": note,
                },
                headers=ADMIN,
            )

        assert decide("fan-1", "confirmed", "a known fan club").json() == {"votes_restored": 0}
        dismissed = decide("fan-2", "dismissed", "a real enthusiast, checked")
        assert dismissed.json() == {"votes_restored": 11}  # the too-fast vote stays out
        assert decide("fan-2", "confirmed").status_code == 409
        assert decide("nobody", "dismissed").status_code == 404
        assert decide("fan-1", "maybe").status_code == 422
        assert client.post("/api/admin/flags/decision", json={}).status_code == 401

        again = client.post("/api/admin/rigging-scan", headers=ADMIN).json()
        assert again["sessions_flagged"] == 0 and again["votes_excluded"] == 0
        counts = client.get("/api/votes/counts").json()
        report = client.get("/api/admin/flags", headers=ADMIN).json()
        audit = client.get("/api/admin/audit", headers=ADMIN).json()

    assert counts["counted"] == 11 and counts["by_reason"]["suspicious_session"] == 12
    decisions = {s["session_hash"]: (s["decision"], s["decision_note"]) for s in report["sessions"]}
    assert decisions == {
        "fan-1": ("confirmed", "a known fan club"),
        "fan-2": ("dismissed", "a real enthusiast, checked"),
    }
    assert [(a["action"], a["target"]) for a in audit[:2]] == [
        ("rigging.scan", ""),
        ("flag.dismiss", "suspicious_session fan-2"),
    ]
