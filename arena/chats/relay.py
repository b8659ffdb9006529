"""Relaying one chat turn: one upstream call, its events in the battle stream's shapes (side
`a` only), written by the battle relay's `TurnEvents` and `EventStreamResponse`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from arena.battles.relay import ChatCall, TurnEvents, sse
from arena.battles.turns import TurnEnd
from arena.chats.service import CHAT_ERROR, CHAT_WITHHELD, ChatPlan, PastChatTurn
from arena.models import BattleStatus
from arena.upstream.client import (
    Answer,
    Delta,
    Failed,
    Finished,
    Limits,
    UpstreamEvent,
    stream_chat,
)
from arena.upstream.http import UpstreamClient

log = logging.getLogger(__name__)

# Called once the answer is over; moderates and stores it, and says how the turn ended.
FinishChatTurn = Callable[[ChatPlan, Answer], Awaitable[TurnEnd]]
SIDE = "a"


def _withheld() -> dict[str, Any]:
    return {"side": SIDE, "type": "withheld", "message": CHAT_WITHHELD}


def _event(event: UpstreamEvent) -> dict[str, Any]:
    if isinstance(event, Delta):
        return {"side": SIDE, "type": "delta", "text": event.text}
    if isinstance(event, Finished):
        return {"side": SIDE, "type": "done", "finish_reason": event.finish_reason}
    if isinstance(event, Failed):
        return {"side": SIDE, "type": "error", "message": CHAT_ERROR}
    raise TypeError(f"not an upstream event: {event!r}")


class ChatRunner:
    """Runs a chat turn in a task of its own, so that a visitor who leaves mid-stream loses
    nothing: the answer is still stored, and a reload replays it."""

    def __init__(
        self,
        client: UpstreamClient,
        limits: Limits,
        finish: FinishChatTurn,
        chat: ChatCall = stream_chat,
    ) -> None:
        self._client = client
        self._limits = limits
        self._finish = finish
        self._chat = chat
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, plan: ChatPlan) -> TurnEvents:
        events = TurnEvents()

        def emit(event: UpstreamEvent) -> None:
            events.put(_event(event))

        task = asyncio.create_task(self._run(plan, events, emit), name=f"chat-{plan.chat_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _task: events.close())
        return events

    async def _run(
        self, plan: ChatPlan, events: TurnEvents, emit: Callable[[UpstreamEvent], None]
    ) -> None:
        status = BattleStatus.failed
        try:
            answer = await self._chat(
                self._client, plan.endpoint, plan.conversation, self._limits, emit
            )
            ended = await self._finish(plan, answer)
            if ended is TurnEnd.withheld:
                # After its `done`: the page takes the streamed text off and shows why.
                events.put(_withheld())
            elif ended is TurnEnd.ready:
                status = BattleStatus.ready
        except Exception:
            log.exception("chat %s: turn %d could not be settled", plan.chat_id, plan.turn)
        finally:
            events.put({"type": "end", "status": status.value})
            events.close()

    async def drain(self, timeout: float) -> int:
        """Let running turns finish (shutdown), then cancel what is left; how many were cut."""
        if not self._tasks:
            return 0
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)


async def replay(past: PastChatTurn) -> AsyncGenerator[str, None]:
    """The events of a turn that already ran, for a reload or a second tab; of an answer
    moderation withheld, only that it was."""
    if past.withheld:
        yield sse(_withheld())
        yield sse({"type": "end", "status": BattleStatus.failed.value})
        return
    if past.content:
        yield sse({"side": SIDE, "type": "delta", "text": past.content})
    if past.failed:
        yield sse({"side": SIDE, "type": "error", "message": CHAT_ERROR})
    else:
        yield sse({"side": SIDE, "type": "done", "finish_reason": past.finish_reason})
    status = BattleStatus.failed if past.failed else BattleStatus.ready
    yield sse({"type": "end", "status": status.value})
