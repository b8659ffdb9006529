"""Relaying one turn: both upstream calls at once, multiplexed into one server-sent event stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

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

log = logging.getLogger(__name__)

# Called once both sides are over; stores the answers and says whether the battle is votable.
FinishTurn = Callable[[TurnPlan, dict[Side, Answer]], Awaitable[bool]]
# One side's upstream call: stream_chat, or stream_chat behind the SSRF guard.
ChatCall = Callable[
    [httpx.AsyncClient, Endpoint, list[dict[str, str]], Limits, Callable[[UpstreamEvent], None]],
    Awaitable[Answer],
]

_END = object()


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


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
        client: httpx.AsyncClient,
        limits: Limits,
        finish: FinishTurn,
        chat: ChatCall = stream_chat,
    ) -> None:
        self._client = client
        self._limits = limits
        self._finish = finish
        self._chat = chat
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, plan: TurnPlan) -> asyncio.Queue[object]:
        queue: asyncio.Queue[object] = asyncio.Queue()
        task = asyncio.create_task(self._run(plan, queue), name=f"battle-{plan.battle_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return queue

    async def _run(self, plan: TurnPlan, queue: asyncio.Queue[object]) -> None:
        status = BattleStatus.failed
        try:
            results = await asyncio.gather(
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
            answers = {Side.a: results[0], Side.b: results[1]}
            if await self._finish(plan, answers):
                status = BattleStatus.ready
        except Exception:
            log.exception("battle %s: turn %d could not be settled", plan.battle_id, plan.turn)
        finally:
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


async def stream_queue(queue: asyncio.Queue[object]) -> AsyncIterator[str]:
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


async def replay(messages: list[Message], status: BattleStatus) -> AsyncIterator[str]:
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
