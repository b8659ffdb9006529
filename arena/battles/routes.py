"""HTTP routes of the battle flow: thin; the logic lives in creation.py, turns.py, votes.py,
views.py and relay.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.datastructures import State

from arena import consent, metrics
from arena.battles import creation, erasure, mine, personal_board, shares, turns, views, votes
from arena.battles.integrity import VoteChecks
from arena.battles.live import LiveTurns
from arena.battles.planned import PlannedTurns
from arena.battles.relay import EventStreamResponse, TurnEvents, TurnRunner, replay
from arena.battles.schemas import (
    BattleCreated,
    BattleErasedOut,
    BattleIn,
    BattleOut,
    MyBattles,
    PersonalLeaderboard,
    PersonalLeaderboardNotYet,
    PromptIn,
    Regenerated,
    Reveal,
    SharedBattle,
    ShareOut,
    VoteIn,
)
from arena.battles.settled import vote_window
from arena.db import SessionDep, Transactions, write_session
from arena.errors import ArenaError
from arena.images.decoding import CleanImage, ImageLimits, clean_images
from arena.models import BattleMode, utcnow
from arena.moderation import Moderator
from arena.ratelimit import VoteThrottledDep, limit_battles
from arena.visitors import Visitor, VisitorDep

router = APIRouter(prefix="/api/battles", tags=["battles"])
me_router = APIRouter(prefix="/api/me", tags=["battles"])
shared_router = APIRouter(prefix="/api/shared", tags=["battles"])
SHARED_PAGE_PREFIX = "/shared/"

SSE_HEADERS = {"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"}
# Set in the request's scope by the fast lane when it found no turn to start: the route then
# replays or explains at once instead of claiming a second time.
TURN_NOT_STARTABLE = "arena.turn_not_startable"


async def attached_images(state: State, data_urls: Sequence[str]) -> list[CleanImage]:
    """The images sent with a prompt, checked and re-encoded off the event loop (ImageRefused
    names the first one that cannot be used)."""
    if not data_urls:
        return []
    limits = ImageLimits.from_settings(state.settings)
    return await asyncio.to_thread(clean_images, data_urls, limits)


async def open_battle(
    state: State,
    prompt: str,
    visitor: Visitor,
    cookies: Mapping[str, str],
    models: Sequence[str] | None = None,
    images: Sequence[CleanImage] = (),
) -> str:
    """Draw the pair (or, with `models`, take the models named: a named battle) and store the
    battle; its id. The first turn's plan waits on this worker for the visitor's stream request
    (planned.py). `cookies` may hold the server's record that this session was shown the release
    notice (consent.py). With `images` (attached_images) the pair is drawn, or the named models
    must be, among the models that read images."""
    transactions: Transactions = state.transactions
    settings = state.settings
    notice_shown_at = consent.notice_shown_at(
        cookies,
        secret=state.secret_key,
        visitor=visitor,
        notice=state.release_notice,
        now=utcnow(),
    )
    # Before the pair is drawn: a refused prompt leaves nothing behind but its count. Its length
    # first, so that moderation is never asked about a prompt refused anyway.
    turns.check_prompt(prompt, settings)
    moderator: Moderator = state.moderator
    await moderator.check_prompt(prompt, [image.data_url() for image in images])
    # The reads first, in a transaction of their own: on SQLite the write transaction holds the
    # database's one write lock.
    if models is None:
        pair = await transactions.read(
            lambda connection: creation.draw_battle_pair(
                connection, prompt=prompt, settings=settings, with_images=bool(images)
            )
        )
    else:
        pair = await transactions.read(
            lambda connection: creation.choose_named_pair(
                connection,
                names=models,
                prompt=prompt,
                settings=settings,
                with_images=bool(images),
            )
        )
    battle_id: str = await transactions.write(
        lambda connection: creation.create_battle(
            connection,
            pair=pair,
            prompt=prompt,
            visitor=visitor,
            settings=settings,
            notice_shown_at=notice_shown_at,
            images=images,
        )
    )
    metrics.battle_started()
    try:
        plan = turns.plan_turn(
            creation.first_turn(battle_id, pair, prompt, images), keys=state.keys
        )
    except Exception:
        # An endpoint key that cannot be read: the stream request plans the turn the usual way
        # and reports it there, where the turn is ended as failed.
        return battle_id
    planned: PlannedTurns = state.planned_turns
    planned.put(visitor.session_hash, plan)
    return battle_id


async def start_turn(state: State, battle_id: str, visitor: Visitor) -> TurnEvents | None:
    """Claim the battle's pending turn and start it: its events. None when there is no turn
    this visitor may start (a reload, a second tab, someone else's battle)."""
    transactions: Transactions = state.transactions
    runner: TurnRunner = state.turn_runner
    planned: PlannedTurns = state.planned_turns
    live: LiveTurns = state.live_turns
    worker: str = state.workers.id
    plan = planned.take(battle_id, visitor.session_hash)
    if plan is not None:
        return _watched(live, battle_id, visitor, _start_planned_turn(state, plan, visitor))
    # A reload or a second tab while the turn runs here: the answers so far, then the rest.
    following = live.follow(battle_id, visitor.session_hash)
    if following is not None:
        return following
    await planned.wait_for_claim(battle_id)
    following = live.follow(battle_id, visitor.session_hash)
    if following is not None:
        return following
    # One short transaction before the stream (the claim, and the reads it allows); the stream
    # itself holds no database session. The claim need not survive a power cut (the turn would
    # be pending again, and streamed on the next request), so it does not wait for the disk.
    claimed = await transactions.write(
        lambda connection: turns.claim_turn(
            connection, battle_id=battle_id, visitor=visitor, worker=worker
        ),
        to_disk=False,
    )
    if claimed is None:
        # Claimed by a request that came in meanwhile on this worker: follow it.
        return live.follow(battle_id, visitor.session_hash)
    try:
        plan = turns.plan_turn(claimed, keys=state.keys)
    except Exception:
        # The claim is committed: end the turn as failed rather than leave it streaming.
        await transactions.write(lambda connection: turns.abandon_turn(connection, claimed=claimed))
        raise
    return _watched(live, battle_id, visitor, runner.start(plan))


def _watched(live: LiveTurns, battle_id: str, visitor: Visitor, events: TurnEvents) -> TurnEvents:
    live.add(battle_id, visitor.session_hash, events)
    return events


def _start_planned_turn(state: State, plan: turns.TurnPlan, visitor: Visitor) -> TurnEvents:
    """A turn planned when its battle was created: both upstream calls start now and their
    tokens are relayed while the claim queues with the worker's other writes; the turn stands
    only if the claim succeeds (else the stream is cut short, see `TurnRunner.start`). The claim
    goes on even if this request is cancelled, so a turn it took is always run and stored."""
    transactions: Transactions = state.transactions
    runner: TurnRunner = state.turn_runner
    planned: PlannedTurns = state.planned_turns
    worker: str = state.workers.id
    claim = asyncio.ensure_future(
        transactions.write(
            lambda connection: turns.claim_planned_turn(
                connection, plan=plan, visitor=visitor, worker=worker
            ),
            to_disk=False,
        )
    )
    planned.claiming(plan.battle_id, claim)
    return runner.start(plan, claim=claim)


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[Depends(limit_battles)])
async def create_battle(body: BattleIn, request: Request, visitor: VisitorDep) -> BattleCreated:
    # An anonymous battle usually comes through the fast lane; one with a field it does not
    # know (mode, models, images) comes here.
    state = request.app.state
    turns.check_prompt(body.prompt, state.settings)
    images = await attached_images(state, body.images)
    models = body.models if body.mode == BattleMode.named else None
    battle_id = await open_battle(state, body.prompt, visitor, request.cookies, models, images)
    return BattleCreated(battle_id=battle_id)


@router.get(
    "/{battle_id}/stream",
    response_class=EventStreamResponse,
    status_code=status.HTTP_200_OK,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_battle(
    battle_id: str, request: Request, visitor: VisitorDep
) -> EventStreamResponse:
    state = request.app.state
    events: TurnEvents | AsyncGenerator[str, None] | None = None
    if not request.scope.get(TURN_NOT_STARTABLE):
        events = await start_turn(state, battle_id, visitor)
    if events is None:
        # Rare: a reload, a second tab, someone else's battle. The ORM path, as a write: a turn
        # whose worker died is ended there.
        try:
            async with write_session(state.sessionmaker) as session:
                past = await views.turn_to_replay(
                    session, battle_id=battle_id, visitor=visitor, settings=state.settings
                )
        except views.TurnStreamingElsewhere:
            # Another worker relays it and holds its text so far: its answers once stored.
            events = _replay_when_streamed(state, battle_id, visitor)
        else:
            events = replay(past.messages, past.status, withheld=past.withheld)
    return EventStreamResponse(events, headers=SSE_HEADERS)


# How often a request for a turn streaming on another worker looks whether it ended, and how
# often it sends a comment meanwhile so that proxies keep the quiet connection open.
_STREAMED_ELSEWHERE_POLL_SECONDS = 0.25
_KEEPALIVE_SECONDS = 10.0


async def _replay_when_streamed(
    state: State, battle_id: str, visitor: Visitor
) -> AsyncGenerator[str, None]:
    """The events of a turn another worker is streaming, once it is stored; a stream cut short
    (the client asks again) should it take longer than a turn may."""
    loop = asyncio.get_running_loop()
    started = last_sent = loop.time()
    give_up = state.settings.total_timeout + 30
    while loop.time() - started < give_up:
        await asyncio.sleep(_STREAMED_ELSEWHERE_POLL_SECONDS)
        # A plain read while it streams: the write below takes SQLite's one write lock.
        async with state.sessionmaker() as session:
            streaming = await views.is_streaming(session, battle_id=battle_id)
        if streaming and loop.time() - started < give_up - 1:
            if loop.time() - last_sent >= _KEEPALIVE_SECONDS:
                last_sent = loop.time()
                yield ": still answering\n\n"
            continue
        try:
            async with write_session(state.sessionmaker) as session:
                past = await views.turn_to_replay(
                    session, battle_id=battle_id, visitor=visitor, settings=state.settings
                )
        except views.TurnStreamingElsewhere:
            if loop.time() - last_sent >= _KEEPALIVE_SECONDS:
                last_sent = loop.time()
                yield ": still answering\n\n"
            continue
        except ArenaError:
            return  # the client asks again and is told why
        async for event in replay(past.messages, past.status, withheld=past.withheld):
            yield event
        return


@router.post(
    "/{battle_id}/turns",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(limit_battles)],
)
async def add_turn(
    battle_id: str, body: PromptIn, request: Request, visitor: VisitorDep
) -> BattleCreated:
    state = request.app.state
    transactions: Transactions = state.transactions
    moderator: Moderator = state.moderator
    turns.check_prompt(body.prompt, state.settings)
    await moderator.check_prompt(body.prompt)
    await transactions.write(
        lambda connection: turns.add_turn(
            connection,
            battle_id=battle_id,
            prompt=body.prompt,
            visitor=visitor,
            settings=state.settings,
        )
    )
    return BattleCreated(battle_id=battle_id)


@router.post(
    "/{battle_id}/regenerate",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(limit_battles)],
)
async def regenerate(battle_id: str, request: Request, visitor: VisitorDep) -> Regenerated:
    """Ask both sides again for the latest turn, before the vote; the stream route then serves
    the new answers. Counts as a turn against the battle's limit and the rate limits."""
    state = request.app.state
    transactions: Transactions = state.transactions
    regenerations = await transactions.write(
        lambda connection: turns.regenerate_turn(
            connection, battle_id=battle_id, visitor=visitor, settings=state.settings
        )
    )
    return Regenerated(battle_id=battle_id, regenerations=regenerations)


@router.post("/{battle_id}/share")
async def share_battle(battle_id: str, request: Request, visitor: VisitorDep) -> ShareOut:
    """Publish the voted battle (names, prompts, answers) at an unguessable address."""
    async with write_session(request.app.state.sessionmaker) as session:
        slug = await shares.publish(session, battle_id=battle_id, visitor=visitor)
    return ShareOut(url=shared_url(request, slug))


@router.delete("/{battle_id}/share", status_code=status.HTTP_204_NO_CONTENT)
async def unshare_battle(battle_id: str, request: Request, visitor: VisitorDep) -> Response:
    async with write_session(request.app.state.sessionmaker) as session:
        await shares.unpublish(session, battle_id=battle_id, visitor=visitor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def shared_url(request: Request, slug: str) -> str:
    return str(request.base_url).rstrip("/") + SHARED_PAGE_PREFIX + slug


@shared_router.get("/{slug}")
async def get_shared_battle(slug: str, session: SessionDep) -> SharedBattle:
    """A battle its visitor published: anyone with the address may read it."""
    return await shares.shared_battle(session, slug=slug)


@router.get("/{battle_id}")
async def get_battle(
    battle_id: str, request: Request, session: SessionDep, visitor: VisitorDep
) -> BattleOut:
    window = vote_window(request.app.state.settings)
    return await views.battle_view(session, battle_id=battle_id, visitor=visitor, window=window)


@router.delete("/{battle_id}")
async def delete_battle(battle_id: str, request: Request, visitor: VisitorDep) -> BattleErasedOut:
    """Erase the texts of one of the visitor's battles; its vote stays counted, without text."""
    state = request.app.state
    async with write_session(state.sessionmaker) as session:
        erased = await erasure.erase_own_battle(
            session, battle_id=battle_id, visitor=visitor, settings=state.settings
        )
    # A first turn planned on this worker would send the prompt upstream before its claim
    # (refused now) is decided: it is dropped. A plan on another worker meets the same refusal.
    planned: PlannedTurns = state.planned_turns
    planned.take(battle_id, visitor.session_hash)
    return BattleErasedOut(battle_id=erased.battle_id, erased_at=erased.erased_at)


@me_router.get("/battles")
async def list_my_battles(
    request: Request,
    session: SessionDep,
    visitor: VisitorDep,
    limit: Annotated[int, Query(ge=1, le=mine.MAX_LISTED)] = 100,
) -> MyBattles:
    """The battles started in this browser session, newest first."""
    window = vote_window(request.app.state.settings)
    return MyBattles(
        battles=await mine.my_battles(session, visitor=visitor, window=window, limit=limit),
        counted_votes=await personal_board.counted_votes(session, visitor=visitor),
    )


@me_router.get(
    "/leaderboard",
    response_model=PersonalLeaderboard,
    responses={
        409: {
            "model": PersonalLeaderboardNotYet,
            "description": "Fewer counted votes than the board needs, and how many more",
        }
    },
)
async def my_leaderboard(session: SessionDep, visitor: VisitorDep) -> Response:
    """A leaderboard fitted on this session's own counted votes, beside the public ratings."""
    try:
        board = await personal_board.personal_leaderboard(session, visitor=visitor)
    except personal_board.TooFewVotes as few:
        not_yet = PersonalLeaderboardNotYet(
            detail=str(few), counted_votes=few.counted, votes_needed=few.needed
        )
        return JSONResponse(not_yet.model_dump(), status_code=status.HTTP_409_CONFLICT)
    return Response(board.model_dump_json(), media_type="application/json")


@router.post("/{battle_id}/vote", response_model=Reveal)
async def vote(
    battle_id: str,
    body: VoteIn,
    request: Request,
    visitor: VisitorDep,
    throttled: VoteThrottledDep,
) -> Response:
    settings = request.app.state.settings
    checks = VoteChecks.from_settings(settings, throttled=throttled)
    # Committed before the answer leaves: an acknowledged vote is a durable vote.
    reveal = await votes.cast_vote(
        request.app.state.engine,
        battle_id=battle_id,
        winner=body.winner,
        visitor=visitor,
        window=vote_window(settings),
        checks=checks,
    )
    # Serialised here: the service built it from the schema, and the hottest route should not
    # pay for FastAPI validating it a second time.
    return Response(reveal.model_dump_json(), media_type="application/json")
