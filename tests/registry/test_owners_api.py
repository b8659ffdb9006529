"""Owner accounts and authentication: tokens shown once, invites, revocation, rate limits, 403s."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Owner
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import ADMIN, ADMIN_TOKEN, bearer, owner_with_model, register, sign_up


def test_sign_up_shows_the_token_once_and_stores_only_its_hash(arena: Arena) -> None:
    with arena.client() as client:
        created = client.post("/api/owners", json={"name": "Ada", "email": "Ada@Example.org"})
        assert created.status_code == 201
        body = created.json()
        token = body["token"]
        assert token.startswith("arena_") and len(token) > 40
        assert body["email"] == "ada@example.org"

        me = client.get("/api/owners/me", headers=bearer(token))
        assert me.status_code == 200 and me.json()["email"] == "ada@example.org"
        assert "token" not in me.json()
        listed = client.get("/api/admin/owners", headers=ADMIN).text
        assert token not in listed

    async def stored(session: AsyncSession) -> Owner:
        owner = await session.scalar(select(Owner))
        assert owner is not None
        return owner

    owner = arena.db(stored)
    assert owner.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(owner.__dict__)


def test_one_account_per_email(arena: Arena) -> None:
    with arena.client() as client:
        sign_up(client, email="ada@example.org")
        again = client.post("/api/owners", json={"name": "Eve", "email": "ADA@example.org"})
        assert again.status_code == 409 and again.json()["detail"].startswith("email: ")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Basic YWRhOnNlY3JldA==",
        "Token arena_x",
        "Bearer arena_not-a-real-token",
    ],
)
def test_owner_routes_need_a_valid_bearer_token(
    shared_arena_factory: Callable[..., Arena], header: str | None
) -> None:
    arena = shared_arena_factory(auth_failures_per_minute=1000)
    headers = {} if header is None else {"Authorization": header}
    with arena.client() as client:
        for method, path in [
            ("GET", "/api/owners/me"),
            ("GET", "/api/models/mine"),
            ("POST", "/api/models"),
            ("POST", "/api/models/x/pause"),
            ("GET", "/api/models/x/stats"),
        ]:
            # Authentication comes before the body is judged: nothing is learnt without it.
            answer = client.request(method, path, headers=headers, json={})
            assert answer.status_code == 401, (method, path, answer.text)


def test_near_misses_of_a_token_are_refused(
    arena_factory: Callable[..., Arena],
) -> None:
    """Prefixes, extensions, case changes and the hash itself: only the exact token works."""
    arena = arena_factory(auth_failures_per_minute=100)
    with arena.client() as client:
        token = sign_up(client)
        digest = hashlib.sha256(token.encode()).hexdigest()
        near_misses = [
            token[:-1],
            token + "x",
            token[:20],
            token.upper(),
            token.swapcase(),
            f" {token}x",
            digest,
            token[:-1] + ("A" if token[-1] != "A" else "B"),
        ]
        for guess in near_misses:
            assert client.get("/api/owners/me", headers=bearer(guess)).status_code == 401
        # The scheme is case-insensitive and padding is trimmed, as RFC 7235 allows.
        assert (
            client.get("/api/owners/me", headers={"Authorization": f"bearer  {token}"}).status_code
            == 200
        )


def test_admin_token_near_misses_are_refused(arena_factory: Callable[..., Arena]) -> None:
    arena = arena_factory(auth_failures_per_minute=100)
    with arena.client() as client:
        for guess in [
            ADMIN_TOKEN[:-1],
            ADMIN_TOKEN + "0",
            ADMIN_TOKEN.upper(),
            ADMIN_TOKEN[:1],
        ]:
            answer = client.get("/api/admin/owners", headers=bearer(guess))
            assert answer.status_code == 401, guess
        # Bytes beyond ASCII in the header must be refused, not crash the comparison.
        raw = {"Authorization": "Bearer é€".encode()}
        assert client.get("/api/admin/owners", headers=raw).status_code == 401
        assert client.get("/api/owners/me", headers=raw).status_code == 401
        assert client.get("/api/admin/owners", headers=ADMIN).status_code == 200


def test_owner_tokens_do_not_open_the_admin_api(arena: Arena) -> None:
    with arena.client() as client:
        token = sign_up(client)
        assert client.get("/api/admin/models", headers=bearer(token)).status_code == 401


def test_admin_api_is_off_without_an_admin_token(arena_factory: Callable[..., Arena]) -> None:
    arena = arena_factory(admin_token=None)
    with arena.client() as client:
        answer = client.get("/api/admin/models", headers=bearer("anything"))
        assert answer.status_code == 403 and "ARENA_ADMIN_TOKEN" in answer.json()["detail"]
        assert client.get("/api/admin/models").status_code == 403


def test_failed_authentication_is_rate_limited(arena_factory: Callable[..., Arena]) -> None:
    arena = arena_factory(auth_failures_per_minute=5)
    with arena.client() as client:
        token = sign_up(client)
        for _ in range(5):
            assert client.get("/api/owners/me", headers=bearer("arena_guess")).status_code == 401
        blocked = client.get("/api/owners/me", headers=bearer("arena_guess"))
        assert blocked.status_code == 429
        assert 1 <= int(blocked.headers["Retry-After"]) <= 60
        # Only failures are limited: the right tokens still pass (see the test below).
        assert client.get("/api/owners/me", headers=bearer(token)).status_code == 200
        assert client.get("/api/admin/owners", headers=ADMIN).status_code == 200
        assert client.get("/api/admin/owners", headers=bearer("guess")).status_code == 429


def test_wrong_tokens_from_a_shared_address_do_not_lock_out_the_right_ones(
    arena_factory: Callable[..., Arena],
) -> None:
    # Everyone behind one proxy shares its address: the default of 10 failures a minute.
    arena = arena_factory(open_signup=False)
    with arena.client() as client:
        invite = client.post("/api/admin/invites", json={"email": "ada@example.org"}, headers=ADMIN)
        assert invite.status_code == 201, invite.text
        for _ in range(10):
            wrong = client.get("/api/admin/owners", headers=bearer("admin-token-guess"))
            assert wrong.status_code == 401
        assert client.get("/api/admin/owners", headers=ADMIN).status_code == 200
        for path in ("/api/admin/owners", "/api/owners/me"):
            limited = client.get(path, headers=bearer("arena_guess"))
            assert limited.status_code == 429, path
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            assert "Too many failed sign-ins" in limited.json()["detail"]
        wrong_code = {"name": "Eve", "email": "eve@example.org", "invite_code": "guessed-code"}
        assert client.post("/api/owners", json=wrong_code).status_code == 429
        # A valid invite code and the owner token it gives pass while the address is limited.
        joined = client.post(
            "/api/owners",
            json={"name": "Ada", "email": "ada@example.org", "invite_code": invite.json()["code"]},
        )
        assert joined.status_code == 201, joined.text
        token = joined.json()["token"]
        assert client.get("/api/owners/me", headers=bearer(token)).status_code == 200
        assert client.get("/api/admin/owners", headers=ADMIN).status_code == 200
        assert client.get("/api/owners/me", headers=bearer("arena_guess")).status_code == 429


def test_successful_calls_do_not_use_up_the_failure_allowance(
    arena_factory: Callable[..., Arena],
) -> None:
    arena = arena_factory(auth_failures_per_minute=3)
    with arena.client() as client:
        token = sign_up(client)
        for _ in range(20):
            assert client.get("/api/owners/me", headers=bearer(token)).status_code == 200


def test_sign_ups_are_rate_limited(arena_factory: Callable[..., Arena]) -> None:
    arena = arena_factory(signups_per_hour=2)
    with arena.client() as client:
        sign_up(client, email="one@example.org")
        sign_up(client, email="two@example.org")
        third = client.post("/api/owners", json={"name": "x", "email": "three@example.org"})
        assert third.status_code == 429 and "Retry-After" in third.headers


def test_invite_only_sign_up(arena_factory: Callable[..., Arena]) -> None:
    arena = arena_factory(open_signup=False, auth_failures_per_minute=100)
    with arena.client() as client:
        bare = client.post("/api/owners", json={"name": "Ada", "email": "ada@example.org"})
        assert bare.status_code == 403 and bare.json()["detail"].startswith("invite_code: ")

        invite = client.post("/api/admin/invites", json={"email": "Ada@example.org"}, headers=ADMIN)
        assert invite.status_code == 201
        code = invite.json()["code"]

        wrong_email = client.post(
            "/api/owners", json={"name": "Eve", "email": "eve@example.org", "invite_code": code}
        )
        assert wrong_email.status_code == 403
        wrong_code = client.post(
            "/api/owners",
            json={"name": "Ada", "email": "ada@example.org", "invite_code": code + "x"},
        )
        assert wrong_code.status_code == 403

        good = client.post(
            "/api/owners", json={"name": "Ada", "email": "ada@example.org", "invite_code": code}
        )
        assert good.status_code == 201, good.text
        # One-time: the same code does not make a second account.
        again = client.post(
            "/api/owners", json={"name": "Ada2", "email": "ada@example.org", "invite_code": code}
        )
        assert again.status_code in (403, 409)


def test_revoked_tokens_stop_working_and_a_new_one_can_be_issued(arena: Arena) -> None:
    with arena.client() as client:
        token = sign_up(client, email="ada@example.org")
        owners = client.get("/api/admin/owners", headers=ADMIN).json()
        owner_id = owners[0]["id"]
        revoked = client.post(f"/api/admin/owners/{owner_id}/revoke", headers=ADMIN)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        denied = client.get("/api/owners/me", headers=bearer(token))
        assert denied.status_code == 401 and "revoked" in denied.json()["detail"]

        reissued = client.post("/api/admin/owners/ada@example.org/token", headers=ADMIN)
        assert reissued.status_code == 200
        new_token = reissued.json()["token"]
        assert client.get("/api/owners/me", headers=bearer(new_token)).status_code == 200
        assert client.get("/api/owners/me", headers=bearer(token)).status_code == 401


def test_an_owner_can_replace_its_own_token(arena: Arena) -> None:
    with arena.client() as client:
        token = sign_up(client)
        replaced = client.post("/api/owners/me/token", headers=bearer(token))
        assert replaced.status_code == 200
        assert client.get("/api/owners/me", headers=bearer(token)).status_code == 401
        assert (
            client.get("/api/owners/me", headers=bearer(replaced.json()["token"])).status_code
            == 200
        )


def test_an_owner_touches_only_its_own_models(arena: Arena, fake_upstream: FakeUpstream) -> None:
    arena.add_model("house-model", fake_upstream.base_url)
    with arena.client() as client:
        ada = sign_up(client, email="ada@example.org")
        eve = sign_up(client, email="eve@example.org")
        assert register(client, ada, fake_upstream.base_url, name="ada-7b").status_code == 201
        client.post("/api/admin/models/ada-7b/approve", headers=ADMIN)
        for name in ("ada-7b", "house-model"):
            for method, path, body in [
                ("GET", f"/api/models/{name}", None),
                ("PATCH", f"/api/models/{name}", {"temperature": 0.1}),
                ("POST", f"/api/models/{name}/test", None),
                ("POST", f"/api/models/{name}/pause", None),
                ("POST", f"/api/models/{name}/resume", None),
                ("POST", f"/api/models/{name}/retire", None),
                ("GET", f"/api/models/{name}/stats", None),
            ]:
                answer = client.request(method, path, json=body, headers=bearer(eve))
                assert answer.status_code == 403, (method, path, answer.text)
        assert client.get("/api/models/mine", headers=bearer(eve)).json() == []
        assert client.get("/api/models/ada-7b", headers=bearer(ada)).json()["status"] == "active"
        missing = client.get("/api/models/nobody/stats", headers=bearer(eve))
        assert missing.status_code == 404


def test_owner_lifecycle_pause_resume_retire(arena: Arena, fake_upstream: FakeUpstream) -> None:
    with arena.client() as client:
        token = sign_up(client)
        register(client, token, fake_upstream.base_url)
        pending_pause = client.post("/api/models/ada-7b/pause", headers=bearer(token))
        assert pending_pause.status_code == 409
        pending_resume = client.post("/api/models/ada-7b/resume", headers=bearer(token))
        assert pending_resume.status_code == 409 and "approval" in pending_resume.json()["detail"]

        client.post("/api/admin/models/ada-7b/approve", headers=ADMIN)
        paused = client.post(
            "/api/models/ada-7b/pause", json={"reason": "maintenance"}, headers=bearer(token)
        )
        assert paused.status_code == 200 and paused.json()["status"] == "paused"
        assert paused.json()["status_reason"] == "maintenance"
        resumed = client.post("/api/models/ada-7b/resume", headers=bearer(token))
        assert resumed.status_code == 200 and resumed.json()["model"]["status"] == "active"

        # Paused by the operator: the owner cannot undo it.
        client.post(
            "/api/admin/models/ada-7b/pause", json={"reason": "under review"}, headers=ADMIN
        )
        blocked = client.post("/api/models/ada-7b/resume", headers=bearer(token))
        assert blocked.status_code == 403 and "under review" in blocked.json()["detail"]

        retired = client.post("/api/models/ada-7b/retire", headers=bearer(token))
        assert retired.status_code == 200 and retired.json()["status"] == "retired"
        for action in ("resume", "pause"):
            assert (
                client.post(f"/api/models/ada-7b/{action}", headers=bearer(token)).status_code
                == 409
            )
        assert (
            client.patch(
                "/api/models/ada-7b", json={"license": "MIT"}, headers=bearer(token)
            ).status_code
            == 409
        )


def test_owner_calls_are_safe_from_cross_site_requests(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    """Only the Authorization header signs an owner in, and browsers never add it on their own:
    a forged form post carries the visitor's cookies and the token in every other place a page
    could put it, and still changes nothing."""
    token = owner_with_model(arena, fake_upstream.base_url)
    foreign = {"Origin": "https://evil.example", "Referer": "https://evil.example/form"}
    with arena.client() as browser:
        browser.get("/")  # whatever cookies the arena gives a visitor
        browser.cookies.set("token", token)
        browser.cookies.set("authorization", f"Bearer {token}")
        for path in (
            "/api/models/ada-7b/pause",
            "/api/models/ada-7b/retire",
            "/api/owners/me/token",
        ):
            for forged in (
                browser.post(path, data={"token": token, "reason": "x"}, headers=foreign),
                browser.post(f"{path}?token={token}&access_token={token}", headers=foreign),
            ):
                assert forged.status_code == 401, (path, forged.text)
                assert "access-control-allow-origin" not in forged.headers
        # No CORS: a foreign page cannot preflight an Authorization header, nor read answers.
        preflight = browser.options(
            "/api/models/ada-7b/pause",
            headers={
                **foreign,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-headers" not in preflight.headers
        # The page cannot be framed (no clickjacking of its buttons) and loads only our scripts.
        page = browser.get("/owner")
        assert page.headers["x-frame-options"] == "DENY"
        policy = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
        assert token not in page.text
        model = browser.get("/api/models/ada-7b", headers=bearer(token)).json()
    assert model["status"] == "active"
