"""HTTP routes of direct chats: thin; the logic lives in service.py and relay.py."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import timedelta

from fastapi import APIRouter, Depends, Request, status
from starlette.datastructures import State

from arena.battles.relay import EventStreamResponse, TurnEvents
from arena.battles.routes import SSE_HEADERS, attached_images
from arena.battles.turns import check_prompt
from arena.chats import service
from arena.chats.relay import ChatRunner, replay
from arena.chats.schemas import (
    ChatCreated,
    ChatIn,
    ChatOut,
    ChatRegenerated,
    ChatTurnIn,
    FeedbackIn,
    FeedbackOut,
)
from arena.db import Transactions
from arena.moderation import Moderator
from arena.ratelimit import limit_battles
from arena.visitors import Visitor, VisitorDep

router = APIRouter(prefix="/api/chats", tags=["chats"])


# The same limits as battles: a chat turn starts an upstream call as a battle turn does.
@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[Depends(limit_battles)])
async def create_chat(body: ChatIn, request: Request, visitor: VisitorDep) -> ChatCreated:
    state = request.app.state
    transactions: Transactions = state.transactions
    # As for a battle: its length, its images and the model first, so that moderation is never
    # asked about a prompt refused anyway; a refused prompt leaves nothing behind but its count.
    check_prompt(body.prompt, state.settings)
    images = await attached_images(state, body.images)
    model_id = await transactions.read(
        lambda connection: service.choose_model(
            connection,
            name=body.model,
            prompt=body.prompt,
            settings=state.settings,
            with_images=bool(images),
        )
    )
    moderator: Moderator = state.moderator
    await moderator.check_prompt(body.prompt, [image.data_url() for image in images])
    chat_id = await transactions.write(
        lambda connection: service.create_chat(
            connection, model_id=model_id, prompt=body.prompt, visitor=visitor, images=images
        )
    )
    return ChatCreated(chat_id=chat_id)


async def _start_turn(state: State, chat_id: str, visitor: Visitor) -> TurnEvents | None:
    transactions: Transactions = state.transactions
    runner: ChatRunner = state.chat_runner
    worker: str = state.workers.id
    claimed = await transactions.write(
        lambda connection: service.claim_turn(
            connection, chat_id=chat_id, visitor=visitor, worker=worker
        ),
        to_disk=False,
    )
    if claimed is None:
        return None
    try:
        plan = service.plan_turn(claimed, keys=state.keys)
    except Exception:
        await transactions.write(
            lambda connection: service.abandon_turn(connection, claimed=claimed)
        )
        raise
    return runner.start(plan)


@router.get(
    "/{chat_id}/stream",
    response_class=EventStreamResponse,
    status_code=status.HTTP_200_OK,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_chat(chat_id: str, request: Request, visitor: VisitorDep) -> EventStreamResponse:
    state = request.app.state
    events: TurnEvents | AsyncGenerator[str, None] | None = await _start_turn(
        state, chat_id, visitor
    )
    if events is None:
        transactions: Transactions = state.transactions
        stale_after = timedelta(seconds=state.settings.total_timeout + 30)
        past = await transactions.write(
            lambda connection: service.turn_to_replay(
                connection, chat_id=chat_id, visitor=visitor, stale_after=stale_after
            )
        )
        events = replay(past)
    return EventStreamResponse(events, headers=SSE_HEADERS)


@router.post(
    "/{chat_id}/turns", status_code=status.HTTP_201_CREATED, dependencies=[Depends(limit_battles)]
)
async def add_turn(
    chat_id: str, body: ChatTurnIn, request: Request, visitor: VisitorDep
) -> ChatCreated:
    state = request.app.state
    transactions: Transactions = state.transactions
    check_prompt(body.prompt, state.settings)
    images = await attached_images(state, body.images)
    moderator: Moderator = state.moderator
    await moderator.check_prompt(body.prompt, [image.data_url() for image in images])
    await transactions.write(
        lambda connection: service.add_turn(
            connection,
            chat_id=chat_id,
            prompt=body.prompt,
            visitor=visitor,
            settings=state.settings,
            images=images,
        )
    )
    return ChatCreated(chat_id=chat_id)


@router.post(
    "/{chat_id}/regenerate",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(limit_battles)],
)
async def regenerate(chat_id: str, request: Request, visitor: VisitorDep) -> ChatRegenerated:
    """Ask the model again for the latest answer; the stream route then serves the new one.
    Counts as a turn against the chat's limit and the rate limits."""
    state = request.app.state
    transactions: Transactions = state.transactions
    regenerations = await transactions.write(
        lambda connection: service.regenerate_turn(
            connection, chat_id=chat_id, visitor=visitor, settings=state.settings
        )
    )
    return ChatRegenerated(chat_id=chat_id, regenerations=regenerations)


@router.post("/{chat_id}/feedback")
async def give_feedback(
    chat_id: str, body: FeedbackIn, request: Request, visitor: VisitorDep
) -> FeedbackOut:
    """A thumbs up or down on one answer, for the model's owner; not a vote, never rated."""
    transactions: Transactions = request.app.state.transactions
    await transactions.write(
        lambda connection: service.record_feedback(
            connection, chat_id=chat_id, turn=body.turn, rating=body.rating, visitor=visitor
        )
    )
    return FeedbackOut(chat_id=chat_id, turn=body.turn, rating=body.rating)


@router.get("/{chat_id}")
async def get_chat(chat_id: str, request: Request, visitor: VisitorDep) -> ChatOut:
    transactions: Transactions = request.app.state.transactions
    return await transactions.read(
        lambda connection: service.chat_view(connection, chat_id=chat_id, visitor=visitor)
    )
