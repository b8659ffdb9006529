"""Before the vote, nothing a visitor receives names a model, its organisation or its endpoint."""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from arena.app import create_app
from arena.config import Settings
from arena.images.decoding import ImageLimits, clean_image
from arena.leaderboard.snapshots import RecomputeConfig, run_recompute
from arena.models import (
    Battle,
    BattleStatus,
    Message,
    Model,
    RatingSnapshot,
    Side,
    Vote,
    Winner,
    utcnow,
)
from tests.conftest import Arena, make_settings, run_db, start_arena
from tests.fake_upstream import FakeUpstream
from tests.images.pictures import picture
from tests.registry.accounts import ADMIN, bearer, owner_with_model
from tests.sse import read_stream, start_battle

SECRETS = ["Zephyr-Secret-9b", "Quasar Hidden Labs", "Nimbus-Covert-3", "Orion Undisclosed"]
# The picture the image battles attach, and its name as stored (re-encoded, hashed).
_PICTURE = picture((24, 16), (40, 80, 200))
_PICTURE_SHA = clean_image(_PICTURE, ImageLimits(4, 5_000_000, 25_000_000)).sha256


def _data_url(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def _everything_seen(response: httpx.Response) -> str:
    seen = [response.text, str(response.status_code)]
    seen += [f"{name}: {value}" for name, value in response.headers.multi_items()]
    return "\n".join(seen)


@pytest.mark.parametrize("with_images", [False, True], ids=["text", "images"])
def test_nothing_identifies_the_models_before_the_vote(
    arena: Arena, fake_upstream: FakeUpstream, with_images: bool
) -> None:
    upstream_ids = ["normal:0.0001", "normal:0.0002"]
    arena.add_model(
        SECRETS[0],
        fake_upstream.base_url,
        upstream_ids[0],
        organization=SECRETS[1],
        supports_images=with_images,
    )
    arena.add_model(
        SECRETS[2],
        fake_upstream.base_url,
        upstream_ids[1],
        organization=SECRETS[3],
        supports_images=with_images,
    )
    forbidden = [*SECRETS, *upstream_ids, fake_upstream.base_url, f":{fake_upstream.port}"]
    seen: list[str] = []
    first: dict[str, Any] = {"prompt": "Who are you?"}
    with arena.client() as visitor:
        seen.append(_everything_seen(visitor.get("/")))
        if with_images:
            first["images"] = [_data_url(_PICTURE)]
            # Refused pictures and a refused image battle answer the same whoever is active.
            for images in (["data:image/png;base64,PGh0bWw+"], [_data_url(b"x" * 10)] * 5):
                refused = visitor.post("/api/battles", json={**first, "images": images})
                assert refused.status_code == 422
                seen.append(_everything_seen(refused))
        created = visitor.post("/api/battles", json=first)
        assert created.status_code == 201, created.text
        seen.append(_everything_seen(created))
        battle_id = created.json()["battle_id"]
        stream = read_stream(visitor, battle_id)
        seen.append(str(stream.events))
        seen += [f"{k}: {v}" for k, v in stream.headers.multi_items()]
        seen.append(_everything_seen(visitor.get(f"/api/battles/{battle_id}")))
        seen.append(_everything_seen(visitor.post(f"/api/battles/{battle_id}/turns", json={})))
        seen.append(_everything_seen(visitor.post(f"/api/battles/{battle_id}/vote", json={})))
        turn = visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "And again?"})
        seen.append(_everything_seen(turn))
        seen.append(_everything_seen(visitor.post(f"/api/battles/{battle_id}/vote", json={})))
        seen.append(str(read_stream(visitor, battle_id).events))
        seen.append(str(read_stream(visitor, battle_id).events))  # the replay too
        # Asked again: the answer to the regeneration, its stream and the view after it.
        seen.append(_everything_seen(visitor.post(f"/api/battles/{battle_id}/regenerate")))
        regenerated = read_stream(visitor, battle_id)
        assert regenerated.end["status"] == "ready"
        seen.append(str(regenerated.events))
        seen += [f"{k}: {v}" for k, v in regenerated.headers.multi_items()]
        seen.append(_everything_seen(visitor.get(f"/api/battles/{battle_id}")))
        seen.append(_everything_seen(visitor.post(f"/api/battles/{battle_id}/share")))
        seen.append(_everything_seen(visitor.get("/api/me/leaderboard")))
        seen.append(str(dict(visitor.cookies)))
        before_vote = "\n".join(seen)
        for secret in forbidden:
            assert secret not in before_vote, f"{secret!r} leaked before the vote"

        reveal = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_b"})
        assert reveal.status_code == 200
        assert SECRETS[0] in reveal.text and SECRETS[2] in reveal.text
        for secret in (*upstream_ids, fake_upstream.base_url):
            assert secret not in reveal.text, "endpoint details are never shown, even after"


# ------------------------------------------------------------ nothing moves when a battle starts

MODELS = ["Zephyr-Secret-9b", "Nimbus-Covert-3", "Orion-Hidden-2", "Quasar-Quiet-5"]
MATRIX_TABLES = ["win-fraction", "battle-count", "predicted-win", "sampling-share"]
VOTE_WINDOW = timedelta(hours=1)
# GET routes the before/after comparison leaves out, by path prefix, and why. Every other GET
# route of the app must be in `_requests` below: the test fails on one that is in neither.
EXCLUDED_GET_ROUTES = {
    "/api/admin/": "the operator's API takes the admin token; the operator reads the database",
    "/static": "files shipped with the package; they read no database",
    "/docs/assets/": "Swagger UI's and ReDoc's files, shipped in a package; they read no database",
    "/metrics": "counters of every battle by design, none naming a model unless a token keeps "
    "them from the public (tests/test_metrics.py checks it)",
}


@dataclass(frozen=True)
class Reader:
    """Who asks: nobody in particular, the visitor of the settled history, or a model's owner."""

    label: str
    cookies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class History:
    """What the test made before the battle: owners, a visitor's voted battle, snapshots."""

    owners: dict[str, str]  # model name -> its owner's token
    visitor_cookies: dict[str, str]
    voted_battle: str
    snapshot_id: int
    chat: str  # the visitor's direct chat, answered and rated
    shared_slug: str


def _get_routes(settings: Settings) -> set[str]:
    """The path of every GET route of the app (built, not started)."""
    app = create_app(settings)
    paths = set()
    for route in iter_route_contexts(app.routes):
        if route.path is not None and (route.methods is None or "GET" in route.methods):
            paths.add(route.path)
    return paths


def _requests(history: History) -> dict[str, list[tuple[Reader, str]]]:
    """Each GET route (by its path template) and the requests the comparison makes of it."""
    anyone = Reader("anyone")
    visitor = Reader("visitor", cookies=history.visitor_cookies)
    owners = {
        name: Reader(f"owner of {name}", headers=bearer(token))
        for name, token in history.owners.items()
    }
    battle = history.voted_battle
    return {
        "/": [(anyone, "/")],
        "/healthz": [(anyone, "/healthz")],
        "/openapi.json": [(anyone, "/openapi.json")],
        "/docs": [(anyone, "/docs")],
        "/redoc": [(anyone, "/redoc")],
        "/leaderboard": [
            (anyone, "/leaderboard"),
            (anyone, "/leaderboard?method=elo&sort=votes&order=desc"),
            (anyone, "/leaderboard?category=multi-turn"),
        ],
        "/models/{name:path}": [(anyone, f"/models/{n}") for n in [*MODELS, "nobody"]],
        "/api/leaderboard": [(anyone, "/api/leaderboard"), (anyone, "/api/leaderboard?method=elo")],
        "/leaderboard.csv": [(anyone, "/leaderboard.csv")],
        "/leaderboard.parquet": [(anyone, "/leaderboard.parquet")],
        "/api/leaderboard/matrices": [(anyone, "/api/leaderboard/matrices")],
        "/leaderboard/{table}.csv": [(anyone, f"/leaderboard/{t}.csv") for t in MATRIX_TABLES],
        "/api/leaderboard/models/{name:path}": [
            (anyone, f"/api/leaderboard/models/{n}") for n in [*MODELS, "nobody"]
        ],
        "/battles.jsonl": [
            (anyone, "/battles.jsonl"),
            (anyone, f"/battles.jsonl?snapshot={history.snapshot_id}"),
        ],
        "/battles.csv": [(anyone, "/battles.csv")],
        "/battles.parquet": [
            (anyone, "/battles.parquet"),
            (anyone, f"/battles.parquet?snapshot={history.snapshot_id}"),
        ],
        "/battles.card.md": [
            (anyone, "/battles.card.md"),
            (anyone, f"/battles.card.md?snapshot={history.snapshot_id}"),
        ],
        "/preferences.jsonl": [(anyone, "/preferences.jsonl")],
        "/preferences.parquet": [(anyone, "/preferences.parquet")],
        "/preferences.card.md": [(anyone, "/preferences.card.md")],
        # The new battle's picture (released only once settled, and only with its texts) and a
        # hash nobody sent.
        "/images/{sha256}": [(anyone, f"/images/{_PICTURE_SHA}"), (anyone, "/images/" + "0" * 64)],
        "/api/sampling": [(anyone, "/api/sampling")],
        "/api/votes/counts": [(anyone, "/api/votes/counts")],
        # The new battle's own view changes as it runs, by design, and names nobody (the test
        # above); a settled battle's view and replay must not change.
        "/api/battles/{battle_id}": [(visitor, f"/api/battles/{battle}")],
        "/api/battles/{battle_id}/stream": [(visitor, f"/api/battles/{battle}/stream")],
        "/api/me/battles": [(visitor, "/api/me/battles")],
        "/api/chats/{chat_id}": [(visitor, f"/api/chats/{history.chat}")],
        "/api/chats/{chat_id}/stream": [(visitor, f"/api/chats/{history.chat}/stream")],
        "/api/me/leaderboard": [(visitor, "/api/me/leaderboard")],
        "/api/shared/{slug}": [(anyone, f"/api/shared/{history.shared_slug}")],
        "/shared/{slug}": [(anyone, f"/shared/{history.shared_slug}")],
        "/me/battles": [(anyone, "/me/battles")],
        "/owner": [(anyone, "/owner")],
        "/api/owners/me": [(owner, "/api/owners/me") for owner in owners.values()],
        "/api/models/mine": [(owner, "/api/models/mine") for owner in owners.values()],
        "/api/models/{name}": [
            (owner, f"/api/models/{other}") for owner in owners.values() for other in MODELS
        ],
        "/api/models/{name}/stats": [
            (owners[name], f"/api/models/{name}/stats") for name in MODELS
        ],
        "/api/owners/me/webhook": [(owner, "/api/owners/me/webhook") for owner in owners.values()],
        # The console's pages send anyone without its cookie to the sign-in form.
        "/admin": [(anyone, "/admin")],
        "/admin/login": [(anyone, "/admin/login")],
        "/admin/audit.csv": [(anyone, "/admin/audit.csv")],
    }


def _check_every_route_is_compared(
    settings: Settings, requests: dict[str, list[tuple[Reader, str]]]
) -> None:
    routes = _get_routes(settings)
    skipped = {
        path
        for path in routes - set(requests)
        if not any(path.startswith(prefix) for prefix in EXCLUDED_GET_ROUTES)
    }
    assert not skipped, (
        f"GET routes {sorted(skipped)} are neither compared before and after a battle starts "
        "nor excluded with a reason: add them to _requests or to EXCLUDED_GET_ROUTES"
    )
    gone = set(requests) - routes
    assert not gone, f"_requests names routes the app does not have: {sorted(gone)}"


# The one thing that moves with the clock and not with the pair: the moment the realised shares
# (and the vote counts beside them on /leaderboard) were read.
_READ_AT_JSON = re.compile(rb'"computed_at":"[^"]*"')
_COOKIE_VALUE = re.compile(r"(arena_session|arena_notice)=[^;]*;")
_READ_AT_HTML = re.compile(rb'\(as of <time datetime="[^"]*">[^<]*</time>\)')


def _seen(path: str, response: httpx.Response) -> str:
    body = response.content
    plain = body
    if path == "/api/sampling":
        plain = _READ_AT_JSON.sub(b'"computed_at":"..."', plain)
    if path.startswith("/leaderboard"):
        plain = _READ_AT_HTML.sub(b"(as of ...)", plain)
    headers = {k: v for k, v in response.headers.items() if k != "date"}
    if "set-cookie" in headers:
        # A new session and the moment the release notice was served: chance and the clock.
        headers["set-cookie"] = _COOKIE_VALUE.sub(r"\1=...;", headers["set-cookie"])
    if plain != body:
        # A body hash: it tells nothing the body does not, and the body is compared.
        etag = headers.pop("etag", None)
        assert etag in (None, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        headers.pop("content-length", None)
    lines = [str(response.status_code), *(f"{k}: {v}" for k, v in sorted(headers.items()))]
    # Parquet is binary: every byte is compared, not a replacement character for it.
    return "\n".join([*lines, "", plain.decode("utf-8", "backslashreplace")])


def _read_everything(settings: Settings, history: History) -> dict[str, str]:
    """Every request of `_requests`, from a freshly started arena (no page cache to hide a
    change) on the same database."""
    reader = start_arena(settings)
    clients: dict[str, httpx.Client] = {}
    try:
        seen = {}
        for requests in _requests(history).values():
            for who, path in requests:
                if who.label not in clients:
                    clients[who.label] = reader.client(cookies=who.cookies, headers=who.headers)
                seen[f"{who.label}: GET {path}"] = _seen(path, clients[who.label].get(path))
        return seen
    finally:
        for client in clients.values():
            client.close()
        reader.server.stop()


def _assert_unchanged(before: dict[str, str], after: dict[str, str], moment: str) -> None:
    changed = [key for key in before if before[key] != after[key]]
    details = []
    for key in changed[:5]:
        diff = difflib.unified_diff(
            before[key].splitlines(), after[key].splitlines(), "before", moment, lineterm="", n=0
        )
        details.append(key + "\n" + "\n".join(list(diff)[:12]))
    assert not changed, f"{len(changed)} answers changed {moment}:\n\n" + "\n\n".join(details)


def _latest_tables(settings: Settings) -> dict[tuple[str, str], tuple[Any, ...]]:
    async def read(session: AsyncSession) -> dict[tuple[str, str], tuple[Any, ...]]:
        latest: dict[tuple[str, str], tuple[Any, ...]] = {}
        for snapshot in await session.scalars(
            select(RatingSnapshot).order_by(RatingSnapshot.computed_at, RatingSnapshot.id)
        ):
            latest[(snapshot.method, snapshot.category)] = (
                snapshot.vote_set_hash,
                snapshot.n_votes,
                snapshot.params,
                snapshot.rows,
                snapshot.extras,
            )
        return latest

    return run_db(settings, read)


def _seed_settled_and_open_battles(settings: Settings) -> None:
    """Battles the flow would have left: two failed (every model's latest answer failed, as its
    circuit breaker counts), one ready and one pending past the vote window (over, unvoted),
    and two still open (ready and streaming) from other visitors."""
    window = VOTE_WINDOW

    async def seed(session: AsyncSession) -> None:
        ids = dict((await session.execute(select(Model.name, Model.id))).all())
        now = utcnow()
        battles = [
            ("failed-1", MODELS[0], MODELS[1], BattleStatus.failed, now, "error"),
            ("failed-2", MODELS[2], MODELS[3], BattleStatus.failed, now, "error"),
            ("over-ready", MODELS[1], MODELS[2], BattleStatus.ready, now - 2 * window, "ok"),
            ("over-pending", MODELS[0], MODELS[3], BattleStatus.pending, now - 3 * window, None),
            # Answered after the failures: a success the breaker counts, but not settled yet.
            ("open-ready", MODELS[0], MODELS[2], BattleStatus.ready, now, "ok"),
            ("open-streaming", MODELS[1], MODELS[3], BattleStatus.streaming, now, None),
        ]
        for n, (battle_id, a, b, status, created_at, answered) in enumerate(battles):
            session.add(
                Battle(
                    id=battle_id,
                    model_a_id=ids[a],
                    model_b_id=ids[b],
                    session_hash=f"another-visitor-{n}",
                    status=status,
                    created_at=created_at,
                    stream_started_at=created_at if status != BattleStatus.pending else None,
                    ready_at=created_at if status == BattleStatus.ready else None,
                )
            )
            session.add(Message(battle_id=battle_id, turn=1, side=Side.user, content="Hello?"))
            if answered is None:
                continue
            # The open battle's answers come a moment after the failures.
            at = created_at + timedelta(milliseconds=5 if battle_id == "open-ready" else 0)
            for side in (Side.a, Side.b):
                session.add(
                    Message(
                        battle_id=battle_id,
                        turn=1,
                        side=side,
                        content="" if answered == "error" else f"Answer {n}{side.value}",
                        error="http_status: HTTP 503" if answered == "error" else None,
                        finish_reason=None if answered == "error" else "stop",
                        first_token_ms=None if answered == "error" else 100.0 + n,
                        duration_ms=None if answered == "error" else 400.0 + n,
                        created_at=at,
                    )
                )
        # As the breaker left them after the failures (the open battle's success has not
        # happened for it: that one is seeded, not run).
        await session.execute(update(Model).values(consecutive_failures=1))

    run_db(settings, seed)


def _make_history(arena: Arena, fake_upstream: FakeUpstream) -> History:
    # Every model reads images: the battle under test carries a picture.
    owners = {
        name: owner_with_model(
            arena, fake_upstream.base_url, name=name, model="normal", supports_images=True
        )
        for name in MODELS
    }
    with arena.client() as visitor:
        voted = ""
        for n in range(4):
            voted = start_battle(visitor, f"History question {n}: why is the sea salty?")
            assert read_stream(visitor, voted).end["status"] == "ready"
            answer = visitor.post(f"/api/battles/{voted}/vote", json={"winner": "model_a"})
            assert answer.status_code == 200, answer.text
        # A named battle voted on and a direct chat rated: in the history of the figures too.
        named = _named_battle(visitor, "A named question", [MODELS[0], MODELS[1]])
        assert visitor.post(f"/api/battles/{named}/vote", json={"winner": "model_b"}).is_success
        chat = visitor.post("/api/chats", json={"model": MODELS[2], "prompt": "Hello there"})
        assert chat.status_code == 201, chat.text
        chat_id = chat.json()["chat_id"]
        with visitor.stream("GET", f"/api/chats/{chat_id}/stream") as streamed:
            assert '"status":"ready"' in streamed.read().decode()
        thumbs = visitor.post(f"/api/chats/{chat_id}/feedback", json={"turn": 1, "rating": "up"})
        assert thumbs.is_success, thumbs.text
        shared = visitor.post(f"/api/battles/{voted}/share")
        assert shared.status_code == 200, shared.text
        cookies = dict(visitor.cookies)
    _seed_settled_and_open_battles(arena.settings)
    outcome = run_recompute(RecomputeConfig.from_settings(arena.settings))
    assert outcome.ran and outcome.stored

    async def snapshot_id(session: AsyncSession) -> int:
        return int(await session.scalar(select(func.max(RatingSnapshot.id))) or 0)

    slug = shared.json()["url"].rsplit("/", 1)[1]
    return History(owners, cookies, voted, arena.db(snapshot_id), chat_id, slug)


def _named_battle(visitor: httpx.Client, prompt: str, models: list[str]) -> str:
    """A side-by-side battle of `models`, answered; its id."""
    created = visitor.post(
        "/api/battles", json={"prompt": prompt, "mode": "named", "models": models}
    )
    assert created.status_code == 201, created.text
    battle_id = str(created.json()["battle_id"])
    assert read_stream(visitor, battle_id).end["status"] == "ready"
    return battle_id


# What a named battle's vote changes: the battles export holds it (anony: false), and the vote
# counts (beside the leaderboard too) list it under its reason.
NAMED_VOTE_MOVES = (
    "anyone: GET /battles.jsonl",
    "anyone: GET /battles.csv",
    "anyone: GET /battles.parquet",
    "anyone: GET /battles.card.md",
    "anyone: GET /api/votes/counts",
    "anyone: GET /leaderboard",
    "anyone: GET /leaderboard?method=elo&sort=votes&order=desc",
    "anyone: GET /leaderboard?category=multi-turn",
)


def _named_owners_views(models: list[str]) -> set[str]:
    """What else it may change, settled: its two models' owners' views of them (the named
    votes counted apart, the answers in the failure streak), as an anonymous battle's do."""
    return {
        f"owner of {m}: GET {path}"
        for m in models
        for path in ("/api/models/mine", f"/api/models/{m}", f"/api/models/{m}/stats")
    }


def _json(settings: Settings, history: History) -> dict[str, Any]:
    """/api/sampling and every owner's stats, as read now."""
    reader = start_arena(settings)
    try:
        with reader.client() as client:
            found: dict[str, Any] = {"sampling": client.get("/api/sampling").json()}
            for name, token in history.owners.items():
                found[name] = client.get(f"/api/models/{name}/stats", headers=bearer(token)).json()
        return found
    finally:
        reader.server.stop()


def test_nothing_public_moves_until_the_battle_settles(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    settings = make_settings(
        database_url,
        tmp_path,
        # No recompute, scan or probe of its own accord: the test runs the recompute itself.
        recompute_every_votes=1_000_000,
        recompute_every_seconds=86_400,
        rigging_scan_seconds=0,
        health_probe_seconds=0,
        release_conversations=True,
        vote_window_seconds=VOTE_WINDOW.total_seconds(),
    )
    arena = start_arena(settings)
    try:
        history = _make_history(arena, fake_upstream)
        _check_every_route_is_compared(settings, _requests(history))
        before = _read_everything(settings, history)
        # Real answers, not a page of refusals that cannot change: only the requests for what
        # does not exist or is another owner's are refused.
        refused = {key for key, seen in before.items() if not seen.startswith("200")}
        assert refused == {
            "anyone: GET /models/nobody",
            "anyone: GET /api/leaderboard/models/nobody",
            "anyone: GET /admin",  # to the sign-in form
            "anyone: GET /admin/audit.csv",
            # No battle carried the picture yet, and nobody sent the other hash.
            f"anyone: GET /images/{_PICTURE_SHA}",
            "anyone: GET /images/" + "0" * 64,
            "visitor: GET /api/me/leaderboard",  # 4 votes of the 20 it needs
            *(f"owner of {o}: GET /api/models/{m}" for o in MODELS for m in MODELS if o != m),
        }
        counts_before = _json(settings, history)
        tables_before = _latest_tables(settings)

        with arena.client() as visitor:
            created = visitor.post(
                "/api/battles",
                json={"prompt": "Which of you drew this?", "images": [_data_url(_PICTURE)]},
            )
            assert created.status_code == 201, created.text
            battle_id = created.json()["battle_id"]
            _assert_unchanged(before, _read_everything(settings, history), "once it started")
            assert read_stream(visitor, battle_id).end["status"] == "ready"
            _assert_unchanged(before, _read_everything(settings, history), "once it answered")
            # A recompute while it is open (other visitors' votes start one) stores the
            # same tables.
            assert run_recompute(RecomputeConfig.from_settings(settings)).ran
            assert _latest_tables(settings) == tables_before, "a recompute counted the open battle"

            reveal = visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"})
            assert reveal.status_code == 200, reveal.text
        drawn = {reveal.json()["model_a"]["name"], reveal.json()["model_b"]["name"]}

        # Voted, it is settled: now the figures count it.
        counts_after = _json(settings, history)
        sampling_before = {m["name"]: m for m in counts_before["sampling"]["models"]}
        sampling_after = {m["name"]: m for m in counts_after["sampling"]["models"]}
        assert counts_after["sampling"]["battles_7d"] == counts_before["sampling"]["battles_7d"] + 1
        for name in MODELS:
            moved = 1 if name in drawn else 0
            assert sampling_after[name]["battles_7d"] == sampling_before[name]["battles_7d"] + moved
            stats_before, stats_after = counts_before[name], counts_after[name]
            assert stats_after["battles"] == stats_before["battles"] + moved
            assert stats_after["answers"] == stats_before["answers"] + moved
            assert stats_before["consecutive_failures"] == 1
            assert stats_after["consecutive_failures"] == (0 if moved else 1)
        assert run_recompute(RecomputeConfig.from_settings(settings)).ran
        shares_before = tables_before[("bt", "all")][4]["battles_drawn"]
        shares_after = _latest_tables(settings)[("bt", "all")][4]["battles_drawn"]
        for name in MODELS:
            assert shares_after[name] == shares_before[name] + (1 if name in drawn else 0)

        # A named battle moves nothing an anonymous battle could be diffed against: nothing
        # while it runs, and once voted, nothing but its own export row and counts.
        before = _read_everything(settings, history)
        tables_before = _latest_tables(settings)
        with arena.client() as visitor:
            named = _named_battle(visitor, "Which of you rhymes better?", MODELS[2:])
            _assert_unchanged(before, _read_everything(settings, history), "once it answered")
            assert visitor.post(f"/api/battles/{named}/vote", json={"winner": "tie"}).is_success
        after = _read_everything(settings, history)
        moved = {key for key in before if before[key] != after[key]}
        assert set(NAMED_VOTE_MOVES) <= moved, sorted(moved)
        assert not moved - {*NAMED_VOTE_MOVES, *_named_owners_views(MODELS[2:])}, sorted(moved)
        assert run_recompute(RecomputeConfig.from_settings(settings)).ran
        tables_after = _latest_tables(settings)
        for key, (vote_set, n_votes, params, rows, extras) in tables_before.items():
            assert tables_after[key][:4] == (vote_set, n_votes, params, rows), key
            assert tables_after[key][4].get("battles_drawn") == extras.get("battles_drawn")
        named_votes = tables_after[("bt", "all")][4]["named_votes"]
        assert named_votes == {MODELS[0]: 1, MODELS[1]: 1, MODELS[2]: 1, MODELS[3]: 1}
    finally:
        arena.server.stop()


def test_a_battle_is_settled_once_voted_failed_or_past_its_vote_window(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(vote_window_seconds=VOTE_WINDOW.total_seconds())
    for name in "abcd":
        arena.add_model(name, fake_upstream.base_url)
    old = 2 * VOTE_WINDOW

    async def seed(session: AsyncSession) -> None:
        ids = dict((await session.execute(select(Model.name, Model.id))).all())
        now = utcnow()
        for n, (a, b, status, age) in enumerate(
            [
                ("a", "b", BattleStatus.voted, timedelta(0)),
                ("a", "c", BattleStatus.failed, timedelta(0)),
                ("b", "c", BattleStatus.ready, old),
                ("c", "d", BattleStatus.pending, old),
                ("d", "a", BattleStatus.streaming, old),
                # Open: none of these counts anywhere yet.
                ("a", "d", BattleStatus.ready, timedelta(0)),
                ("b", "d", BattleStatus.pending, timedelta(0)),
                ("a", "b", BattleStatus.streaming, timedelta(0)),
            ]
        ):
            session.add(
                Battle(
                    id=f"seeded-{n}",
                    model_a_id=ids[a],
                    model_b_id=ids[b],
                    session_hash="s",
                    status=status,
                    created_at=now - age,
                )
            )
        await session.flush()
        session.add(Vote(battle_id="seeded-0", winner=Winner.model_a, session_hash="s"))

    arena.db(seed)
    settled = {"a": 3, "b": 2, "c": 3, "d": 2}
    with arena.client() as client:
        sampling = client.get("/api/sampling").json()
        assert sampling["battles_7d"] == sampling["battles_30d"] == 5
        assert {m["name"]: m["battles_7d"] for m in sampling["models"]} == settled
        for name, battles in settled.items():
            stats = client.get(f"/api/admin/models/{name}/stats", headers=ADMIN).json()
            assert stats["battles"] == battles, name
    assert run_recompute(RecomputeConfig.from_settings(arena.settings)).ran
    assert _latest_tables(arena.settings)[("bt", "all")][4]["battles_drawn"] == settled


def test_past_its_vote_window_a_battle_takes_no_vote_and_counts(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = arena_factory(vote_window_seconds=VOTE_WINDOW.total_seconds())
    arena.add_model(MODELS[0], fake_upstream.base_url)
    arena.add_model(MODELS[1], fake_upstream.base_url)
    with arena.client() as visitor:
        battle_id = start_battle(visitor)
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        assert visitor.get("/api/sampling").json()["battles_7d"] == 0
        assert visitor.get(f"/api/battles/{battle_id}").json()["closed"] is False

        async def age(session: AsyncSession) -> None:
            # As if the visitor came back two hours later.
            await session.execute(
                update(Battle)
                .where(Battle.id == battle_id)
                .values(created_at=utcnow() - 2 * VOTE_WINDOW)
            )

        arena.db(age)
        for late in (
            visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"}),
            visitor.post(f"/api/battles/{battle_id}/turns", json={"prompt": "Still there?"}),
        ):
            assert late.status_code == 409, late.text
            message = late.json()["detail"]
            assert "closed 1 hour after it started" in message and "new battle" in message
            assert not any(name in late.text for name in MODELS)
        sampling = visitor.get("/api/sampling").json()
        assert sampling["battles_7d"] == 1
        assert {m["name"]: m["battles_7d"] for m in sampling["models"]} == {
            MODELS[0]: 1,
            MODELS[1]: 1,
        }
        view = visitor.get(f"/api/battles/{battle_id}").json()
        assert view["models"] is None and view["closed"] is True
