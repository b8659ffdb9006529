"""Relaying one turn: both upstream calls at once, multiplexed into one server-sent event stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from arena.battles.service import NEUTRAL_ERROR, TurnPlan
from arena.models import BattleStatus, Message, Side
from arena.upstream.client import (
    Answer,
    Delta,
    Endpoint,
    Failed,
    Finished,
    Limits,
    UpstreamEvent,
    stream_chat,
)
from arena.upstream.http import UpstreamClient

log = logging.getLogger(__name__)

# Called once both sides are over; stores the answers and says whether the battle is votable.
FinishTurn = Callable[[TurnPlan, dict[Side, Answer]], Awaitable[bool]]
# One side's upstream call: stream_chat, or stream_chat behind the SSRF guard.
ChatCall = Callable[
    [UpstreamClient, Endpoint, list[dict[str, str]], Limits, Callable[[UpstreamEvent], None]],
    Awaitable[Answer],
]

_END = object()
# One encoder for every event: json.dumps with options builds a new one on each call.
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class EventStreamResponse(StreamingResponse):
    """A `text/event-stream` answer written straight to the server: StreamingResponse watches
    for the visitor leaving through an anyio task group, which cost more per battle than the
    events themselves. Here one plain task waits for the disconnect, and the loop stops at the
    next event after it (the turn itself runs to its end in a task of its own either way)."""

    def __init__(self, events: AsyncGenerator[str, None], headers: dict[str, str]) -> None:
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        left = asyncio.ensure_future(_disconnected(receive))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async with aclosing(self._events) as events:
                async for chunk in events:
                    if left.done():
                        return
                    body = chunk.encode()
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            # The server answers the pending receive with a disconnect once the response is
            # complete, and the task ends by itself: cancelled, it would leave an exception and
            # its traceback for the cycle collector, once per battle.
            await asyncio.sleep(0)
        finally:
            if not left.done():
                left.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def sse(payload: dict[str, Any]) -> str:
    return f"data: {_to_json(payload)}\n\n"


def _event(side: Side, event: UpstreamEvent) -> dict[str, Any]:
    if isinstance(event, Delta):
        return {"side": side.value, "type": "delta", "text": event.text}
    if isinstance(event, Finished):
        return {"side": side.value, "type": "done", "finish_reason": event.finish_reason}
    assert isinstance(event, Failed)
    return {"side": side.value, "type": "error", "message": NEUTRAL_ERROR}


def _emitter(queue: asyncio.Queue[object], side: Side) -> Callable[[UpstreamEvent], None]:
    def emit(event: UpstreamEvent) -> None:
        queue.put_nowait(_event(side, event))

    return emit


class TurnRunner:
    """Runs a turn in a task of its own, so a visitor who leaves mid-stream loses nothing:
    the answers are still stored and the battle can be reloaded and voted on."""

    def __init__(
        self,
        client: UpstreamClient,
        limits: Limits,
        finish: FinishTurn,
        chat: ChatCall = stream_chat,
    ) -> None:
        self._client = client
        self._limits = limits
        self._finish = finish
        self._chat = chat
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self, plan: TurnPlan, claim: asyncio.Future[bool] | None = None
    ) -> asyncio.Queue[object]:
        """Both upstream calls of `plan`, now; their events come on the queue. With `claim`,
        the turn is not yet the caller's, though its events come on the queue at once: should
        the claim come out false (or fail), the calls are cancelled, nothing is stored, and the
        queue ends without an "end" event: to the visitor, a stream cut short, which they ask
        for again and are answered from the database."""
        queue: asyncio.Queue[object] = asyncio.Queue()
        task = asyncio.create_task(self._run(plan, queue, claim), name=f"battle-{plan.battle_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return queue

    async def _run(
        self, plan: TurnPlan, queue: asyncio.Queue[object], claim: asyncio.Future[bool] | None
    ) -> None:
        status: BattleStatus | None = BattleStatus.failed
        chats = asyncio.gather(
            *(
                self._chat(
                    self._client,
                    side_plan.endpoint,
                    side_plan.conversation,
                    self._limits,
                    _emitter(queue, side),
                )
                for side, side_plan in ((Side.a, plan.a), (Side.b, plan.b))
            )
        )
        try:
            if claim is not None and not await _claimed(claim, plan.battle_id):
                status = None
                chats.cancel()  # nothing of a turn not ours is stored
                await asyncio.gather(chats, return_exceptions=True)
                return
            results = await chats
            answers = {Side.a: results[0], Side.b: results[1]}
            if await self._finish(plan, answers):
                status = BattleStatus.ready
        except Exception:
            log.exception("battle %s: turn %d could not be settled", plan.battle_id, plan.turn)
        finally:
            chats.cancel()  # a no-op once they are over; else this task itself was cancelled
            if status is not None:
                queue.put_nowait({"type": "end", "status": status.value})
            queue.put_nowait(_END)

    async def drain(self, timeout: float) -> None:
        """Let running turns finish (shutdown), then cancel what is left (the app closes its
        client)."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


async def _claimed(claim: asyncio.Future[bool], battle_id: str) -> bool:
    try:
        return await asyncio.shield(claim)
    except Exception:
        # The turn stays pending: the visitor's next request for it claims it again.
        log.exception("battle %s: the claim on its planned turn failed", battle_id)
        return False


async def stream_queue(queue: asyncio.Queue[object]) -> AsyncGenerator[str, None]:
    """The queued events as SSE, several to a write: under load each write's pass through the
    ASGI layers costs more than the event. After the first event of a write, one turn of the
    event loop lets what is already on its way (often the other side's token) join it."""
    while True:
        item = await queue.get()
        if queue.empty() and item is not _END:
            await asyncio.sleep(0)
        waiting: list[str] = []
        while item is not _END:
            assert isinstance(item, dict)
            waiting.append(sse(item))
            if queue.empty():
                break
            item = queue.get_nowait()
        if waiting:
            yield "".join(waiting)
        if item is _END:
            return


async def replay(messages: list[Message], status: BattleStatus) -> AsyncGenerator[str, None]:
    """The events of a turn that already ran, for a reload or a second tab."""
    for message in messages:
        side = message.side.value
        if message.content:
            yield sse({"side": side, "type": "delta", "text": message.content})
        if message.error:
            yield sse({"side": side, "type": "error", "message": NEUTRAL_ERROR})
        else:
            yield sse({"side": side, "type": "done", "finish_reason": message.finish_reason})
    final = BattleStatus.failed if status == BattleStatus.failed else BattleStatus.ready
    yield sse({"type": "end", "status": final.value})
