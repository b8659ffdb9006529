"""Relaying one turn: both upstream calls at once, multiplexed into one server-sent event stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from contextlib import aclosing
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from arena import metrics
from arena.battles.turns import NEUTRAL_ERROR, TurnEnd, TurnPlan
from arena.models import BattleStatus, Message, Side
from arena.moderation import WITHHELD_MESSAGE
from arena.upstream.client import (
    Answer,
    ChatMessage,
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

# Called once both sides are over; moderates and stores the answers, and says how the turn ended.
FinishTurn = Callable[[TurnPlan, dict[Side, Answer]], Awaitable[TurnEnd]]
# One side's upstream call: stream_chat, or stream_chat behind the SSRF guard.
ChatCall = Callable[
    [UpstreamClient, Endpoint, list[ChatMessage], Limits, Callable[[UpstreamEvent], None]],
    Awaitable[Answer],
]

# One encoder for every event: json.dumps with options builds a new one on each call.
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class EventStreamResponse(StreamingResponse):
    """A `text/event-stream` answer written straight to the server: StreamingResponse watches
    for the visitor leaving through an anyio task group, which cost more per battle than the
    events themselves. Here one plain task waits for the disconnect.

    The events are a live turn's (`TurnEvents`, written from the upstream calls' callbacks as
    they come) or any other source's (an async generator, written as it yields). Either way the
    turn itself runs to its end in a task of its own, whether the visitor stays or not."""

    def __init__(
        self, events: AsyncGenerator[str, None] | TurnEvents, headers: dict[str, str]
    ) -> None:
        if isinstance(events, TurnEvents):
            self._live: TurnEvents | None = events
            content: AsyncGenerator[str, None] = _nothing()
        else:
            self._live, content = None, events
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._events = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        left = asyncio.ensure_future(_disconnected(receive))
        metrics.stream_opened()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if self._live is not None:
                if not await self._relay(self._live, send, left):
                    return
            else:
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
            metrics.stream_closed()
            if not left.done():
                left.cancel()

    @staticmethod
    async def _relay(live: TurnEvents, send: Send, left: asyncio.Future[None]) -> bool:
        """Write the turn's events as they come, until its last; False if the visitor left."""
        writer = PushedBody(send)
        live.attach(writer.write)
        ends: list[asyncio.Future[Any]] = [live.over, writer.broken, left]
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            live.detach()
        if writer.broken.done():
            raise writer.broken.result()
        if left.done():
            return False
        await writer.flushed()
        return True


async def _nothing() -> AsyncGenerator[str, None]:
    return
    yield  # an async generator that yields nothing


class PushedBody:
    """Writes body pieces through an ASGI `send` from plain callbacks, in order, without waiting
    for a task to be woken: each `send` is run at once and finishes there unless the server
    makes it wait (flow control, when the visitor reads slowly). Then it goes on in a task and
    what comes meanwhile waits for it. A failed send ends the writing; `broken` holds why."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._backlog: list[bytes] = []
        self._waiting: asyncio.Task[None] | None = None
        self.broken: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    def write(self, body: bytes) -> None:
        if self.broken.done():
            return
        if self._waiting is not None:
            self._backlog.append(body)
            return
        self._start(body)

    def _start(self, body: bytes) -> None:
        sending = _coroutine(
            self._send({"type": "http.response.body", "body": body, "more_body": True})
        )
        try:
            awaited = sending.send(None)
        except StopIteration:
            return
        except (Exception, asyncio.CancelledError) as exc:
            self.broken.set_result(exc)
            return
        self._waiting = asyncio.ensure_future(self._finish(sending, awaited))

    async def _finish(self, sending: Coroutine[Any, Any, None], awaited: Any) -> None:
        """Go on with a send that had to wait, as a task would have, then with the backlog."""
        try:
            while True:
                try:
                    if awaited is None:  # a bare yield: one turn of the loop
                        await asyncio.sleep(0)
                    else:
                        await asyncio.wait([awaited])
                except asyncio.CancelledError:
                    sending.close()
                    raise
                try:
                    awaited = sending.send(None)
                except StopIteration:
                    break
                except (Exception, asyncio.CancelledError) as exc:  # the server's, not ours
                    self.broken.set_result(exc)
                    return
        finally:
            self._waiting = None
        if self._backlog:  # what came meanwhile, in one piece
            body = b"".join(self._backlog)
            self._backlog.clear()
            self._start(body)

    async def flushed(self) -> None:
        """Wait until every piece written so far has been sent (or the writing broke)."""
        while self._waiting is not None and not self.broken.done():
            await asyncio.wait([self._waiting])


def _coroutine(awaitable: Awaitable[None]) -> Coroutine[Any, Any, None]:
    """The awaitable an ASGI `send` returned, as a coroutine that can be run step by step."""
    if isinstance(awaitable, Coroutine):
        return awaitable

    async def awaiting() -> None:
        await awaitable

    return awaiting()


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
    if isinstance(event, Failed):
        return {"side": side.value, "type": "error", "message": NEUTRAL_ERROR}
    raise TypeError(f"not an upstream event: {event!r}")


class TurnEvents:
    """A live turn's events on their way to the visitor. The upstream calls put them here from
    their read callbacks. Until a response takes them they wait; then the turn's first write
    goes out at once, in the callback that brought it, and later events are gathered for one
    turn of the event loop, so that tokens of both sides arriving together go in one write.

    A second request for the turn while it runs (a reload, a second tab) `follow`s it: the
    events so far in one piece, then the rest as they come. What the turn sent is kept for that
    while it runs, bounded as the answers are (the upstream output cap)."""

    def __init__(self, *, followable: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        self._followable = followable
        self._waiting: list[str] = []
        self._write: Callable[[bytes], None] | None = None
        self._written = False
        self._flush_soon: asyncio.Handle | None = None
        self._sent: list[str] = []
        self._followers: list[TurnEvents] = []
        self._left = False
        # Done after the last event: with it, or without it when the turn was cut short.
        self.over: asyncio.Future[None] = self._loop.create_future()

    def put(self, payload: dict[str, Any]) -> None:
        self._put_text(sse(payload))

    def _put_text(self, text: str) -> None:
        if self.over.done():
            return
        if self._followable:
            self._sent.append(text)
        if self._followers:
            self._followers = [f for f in self._followers if not f._left]
            for follower in self._followers:
                follower._put_text(text)
        self._waiting.append(text)
        if self._write is None or self._flush_soon is not None:
            return
        if self._written:
            self._flush_soon = self._loop.call_soon(self._flush)
        else:
            self._flush()

    def follow(self) -> TurnEvents:
        """The turn's events for one more listener: those sent so far, then the others."""
        follower = TurnEvents(followable=False)
        if self._sent:
            follower._waiting.append("".join(self._sent))
        if self.over.done():
            follower.over.set_result(None)
        else:
            self._followers.append(follower)
        return follower

    def close(self) -> None:
        """No more events; those waiting go out now."""
        if not self.over.done():
            self._flush()
            self.over.set_result(None)
            for follower in self._followers:
                follower.close()
            self._followers.clear()

    def attach(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._flush()

    def detach(self) -> None:
        self._write = None
        # A listener gone before the end: the turn stops copying its events here.
        self._left = not self.over.done()
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None

    def _flush(self) -> None:
        self._flush_soon = None
        if self._write is None or not self._waiting:
            return
        body = "".join(self._waiting).encode()
        self._waiting.clear()
        self._written = True
        self._write(body)


def _emitter(events: TurnEvents, side: Side) -> Callable[[UpstreamEvent], None]:
    def emit(event: UpstreamEvent) -> None:
        events.put(_event(side, event))

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

    def start(self, plan: TurnPlan, claim: asyncio.Future[bool] | None = None) -> TurnEvents:
        """Both upstream calls of `plan`, now (their requests are written before this returns,
        on kept-alive connections); their events come through what it returns. With `claim`,
        the turn is not yet the caller's, though its events come at once: should the claim come
        out false (or fail), the calls are cancelled, nothing is stored, and the events end
        without an "end" event: to the visitor, a stream cut short, which they ask for again
        and are answered from the database."""
        events = TurnEvents()
        # The calls' tasks are made before the turn's, so they are under way (and clean up
        # after themselves) before the turn can cancel them.
        chats = asyncio.gather(
            *(
                self._call(side_plan.endpoint, side_plan.conversation, _emitter(events, side))
                for side, side_plan in ((Side.a, plan.a), (Side.b, plan.b))
            )
        )
        task = asyncio.create_task(
            self._run(plan, events, chats, claim), name=f"battle-{plan.battle_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

        # Even if the turn's task is cancelled before it first runs: no call outlives it, and
        # the events end.
        def settled(_task: asyncio.Task[None]) -> None:
            chats.cancel()
            events.close()

        task.add_done_callback(settled)
        return events

    def _call(
        self,
        endpoint: Endpoint,
        conversation: list[ChatMessage],
        emit: Callable[[UpstreamEvent], None],
    ) -> Awaitable[Answer]:
        try:
            return self._chat(self._client, endpoint, conversation, self._limits, emit)
        except Exception as exc:  # raised where the turn's task settles it, as it always was
            return _raising(exc)

    async def _run(
        self,
        plan: TurnPlan,
        events: TurnEvents,
        chats: asyncio.Future[list[Answer]],
        claim: asyncio.Future[bool] | None,
    ) -> None:
        status: BattleStatus | None = BattleStatus.failed
        try:
            if claim is not None and not await _claimed(claim, plan.battle_id):
                status = None
                chats.cancel()  # nothing of a turn not ours is stored
                await asyncio.gather(chats, return_exceptions=True)
                return
            results = await chats
            answers = {Side.a: results[0], Side.b: results[1]}
            ended = await self._finish(plan, answers)
            if ended is TurnEnd.withheld:
                # The same for both sides: which answer was flagged is not the visitor's to know.
                for side in (Side.a, Side.b):
                    events.put(_withheld(side))
            elif ended is TurnEnd.ready:
                status = BattleStatus.ready
        except Exception:
            log.exception("battle %s: turn %d could not be settled", plan.battle_id, plan.turn)
        finally:
            chats.cancel()  # a no-op once they are over; else this task itself was cancelled
            if status is not None:
                events.put({"type": "end", "status": status.value})
            events.close()

    async def drain(self, timeout: float) -> int:
        """Let running turns finish (shutdown), then cancel what is left (the app closes its
        client); how many were cut short (left streaming, see arena/workers.py)."""
        if not self._tasks:
            return 0
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)


async def _raising(exc: Exception) -> Answer:
    raise exc


async def _claimed(claim: asyncio.Future[bool], battle_id: str) -> bool:
    try:
        return await asyncio.shield(claim)
    except Exception:
        # The turn stays pending: the visitor's next request for it claims it again.
        log.exception("battle %s: the claim on its planned turn failed", battle_id)
        return False


def _withheld(side: Side) -> dict[str, Any]:
    return {"side": side.value, "type": "withheld", "message": WITHHELD_MESSAGE}


async def replay(
    messages: list[Message], status: BattleStatus, *, withheld: bool = False
) -> AsyncGenerator[str, None]:
    """The events of a turn that already ran, for a reload or a second tab; of a turn whose
    answers moderation withheld, only that they were."""
    if withheld:
        for withheld_side in (Side.a, Side.b):
            yield sse(_withheld(withheld_side))
        yield sse({"type": "end", "status": BattleStatus.failed.value})
        return
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
