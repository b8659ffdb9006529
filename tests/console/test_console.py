"""The operator console over HTTP: signing in by form and cookie, the form token on every
action, the actions themselves with their audit entries, errors as pages, and its absence
from anything public."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Battle, BattleStatus, FlaggedSession, Vote, Winner
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import ADMIN, ADMIN_TOKEN, bearer, register, sign_up


def _signed_in(arena: Arena) -> tuple[httpx.Client, str]:
    """A browser signed in to the console, and the form token its pages carry."""
    client = arena.client(follow_redirects=False)
    signed = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert signed.status_code == 303 and signed.headers["location"] == "/admin"
    page = client.get("/admin")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return client, found.group(1)


def _audit(arena: Arena) -> list[tuple[str, str, str]]:
    with arena.client() as client:
        log = client.get("/api/admin/audit", headers=ADMIN).json()
    return [(e["action"], e["target"], e["reason"]) for e in log]


def test_signing_in_sets_a_strict_expiring_cookie_and_no_token_travels_in_a_url(
    arena: Arena,
) -> None:
    with arena.client(follow_redirects=False) as client:
        assert client.get("/admin").headers["location"] == "/admin/login"
        form = client.get("/admin/login")
        assert form.status_code == 200
        assert 'method="post"' in form.text and 'type="password"' in form.text
        wrong = client.post("/admin/login", data={"token": "not-the-token"})
        assert wrong.status_code == 401 and "not the admin token" in wrong.text
        assert "set-cookie" not in wrong.headers
        signed = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("arena_console=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/admin", "Max-Age=28800"):
        assert attribute.lower() in cookie.lower(), (attribute, cookie)
    assert ADMIN_TOKEN not in cookie
    assert "token" not in signed.headers["location"]


def test_a_session_dies_with_the_admin_token_it_was_made_from(
    arena_factory: Callable[..., Arena],
) -> None:
    secret = Fernet.generate_key().decode()
    first = arena_factory(secret_key=secret)
    client, _csrf = _signed_in(first)
    cookie = client.cookies.get("arena_console")
    assert cookie
    rotated = arena_factory(secret_key=secret, admin_token="another-admin-token-0123456789")
    with rotated.client(follow_redirects=False) as other:
        other.cookies.set("arena_console", cookie, path="/admin")
        assert other.get("/admin").headers["location"] == "/admin/login"
    for forged in ("", "x" * 5000, Fernet(Fernet.generate_key()).encrypt(b"{}").decode()):
        with first.client(follow_redirects=False) as other:
            other.cookies.set("arena_console", forged, path="/admin")
            assert other.get("/admin").status_code == 303
    client.close()


def test_console_actions_need_the_form_token_and_are_audited(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    with arena.client() as owner_client:
        token = sign_up(owner_client)
        assert register(owner_client, token, fake_upstream.base_url).status_code == 201
    client, csrf = _signed_in(arena)
    try:
        page = client.get("/admin").text
        assert "ada-7b" in page and "Waiting for approval (1)" in page

        for sent in ({}, {"csrf": "forged"}):
            refused = client.post("/admin/models/ada-7b/approve", data=sent)
            assert refused.status_code == 403 and "reload" in refused.text
        approved = client.post("/admin/models/ada-7b/approve", data={"csrf": csrf})
        assert approved.status_code == 303

        no_reason = client.post(
            "/admin/models/ada-7b/status", data={"csrf": csrf, "to": "pause", "reason": " "}
        )
        assert no_reason.status_code == 422 and "give a reason" in no_reason.text
        assert "text/html" in no_reason.headers["content-type"]
        paused = client.post(
            "/admin/models/ada-7b/status",
            data={"csrf": csrf, "to": "pause", "reason": "too slow"},
        )
        assert paused.status_code == 303
        bad_weight = client.post("/admin/models/ada-7b/weight", data={"csrf": csrf, "value": -1})
        assert bad_weight.status_code == 422 and "value" in bad_weight.text
        weighted = client.post("/admin/models/ada-7b/weight", data={"csrf": csrf, "value": 2.5})
        assert weighted.status_code == 303

        invite = client.post("/admin/invites", data={"csrf": csrf, "email": "bo@example.org"})
        code = re.search(r'id="secret">([^<]+)<', invite.text)
        assert invite.status_code == 200 and code is not None and len(code.group(1)) >= 16
        owner_id = re.search(r'/admin/owners/(\d+)/token"', client.get("/admin").text)
        assert owner_id is not None
        issued = client.post(f"/admin/owners/{owner_id.group(1)}/token", data={"csrf": csrf})
        assert issued.status_code == 200
        assert client.post("/admin/recompute", data={"csrf": csrf}).status_code == 303
        probe = client.post("/admin/models/ada-7b/probe", data={"csrf": csrf})
        assert probe.status_code == 200 and "The endpoint answered" in probe.text

        exported = client.get("/admin/audit.csv")
        assert exported.status_code == 200 and "model.weight" in exported.text
        assert client.post("/admin/logout", data={"csrf": csrf}).status_code == 303
        assert client.get("/admin").headers["location"] == "/admin/login"
    finally:
        client.close()

    with arena.client() as owner_client:
        assert owner_client.get("/api/owners/me", headers=bearer(token)).status_code == 401
        stats = owner_client.get("/api/models/mine", headers=bearer(token))
        assert stats.status_code == 401
    with arena.client() as admin:
        weight = admin.get("/api/admin/models", headers=ADMIN).json()[0]["sampling_weight"]
    assert weight == 2.5
    assert _audit(arena) == [
        ("ratings.recompute", "", ""),
        ("owner.new_token", "ada@example.org", ""),
        ("invite.create", "bo@example.org", ""),
        ("model.weight", "ada-7b", "weight 2.5"),
        ("model.pause", "ada-7b", "too slow"),
        ("model.approve", "ada-7b", ""),
    ]


def test_the_integrity_queue_takes_a_decision_with_its_note(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    a = arena.add_model("alpha", fake_upstream.base_url, organization="A")
    b = arena.add_model("beta", fake_upstream.base_url, organization="B")

    async def seed(session: AsyncSession) -> None:
        session.add(
            FlaggedSession(
                session_hash="suspect-session-hash",
                reason="suspicious_session",
                detail="alpha won 12 of 12, where the ratings expect 5.1",
            )
        )
        for n in range(3):
            session.add(
                Battle(
                    id=f"flagged-{n}",
                    model_a_id=a,
                    model_b_id=b,
                    session_hash="suspect-session-hash",
                    status=BattleStatus.voted,
                )
            )
            session.add(
                Vote(
                    battle_id=f"flagged-{n}",
                    winner=Winner.model_a,
                    session_hash="suspect-session-hash",
                    counted=False,
                    flags=["suspicious_session"],
                )
            )

    arena.db(seed)
    client, csrf = _signed_in(arena)
    try:
        page = client.get("/admin").text
        assert "Integrity queue (1)" in page and "where the ratings expect 5.1" in page
        form = {
            "csrf": csrf,
            "session_hash": "suspect-session-hash",
            "reason": "suspicious_session",
            "note": "a known enthusiast",
        }
        wrong = client.post("/admin/flags/decision", data={**form, "decision": "maybe"})
        assert wrong.status_code == 422 and "decision" in wrong.text
        done = client.post("/admin/flags/decision", data={**form, "decision": "dismissed"})
        assert done.status_code == 303
        assert "3%20of%20its%20votes%20count%20again" in done.headers["location"]
        after = client.get("/admin").text
        assert "Integrity queue (0)" in after and "a known enthusiast" in after
    finally:
        client.close()
    with arena.client() as public:
        assert public.get("/api/votes/counts").json()["counted"] == 3
    assert _audit(arena)[0] == (
        "flag.dismiss",
        "suspicious_session suspect-session-hash",
        "a known enthusiast",
    )
