"""First turns planned when their battle is created, waiting on this worker for the visitor's
stream request.

With the plan at hand, the stream request starts both upstream calls at once and relays their
tokens while its claim on the turn is written; the claim still decides (see `routes.start_turn`).
Without it, the first token would wait for the claim's transaction, which queues behind the
other writes of a busy worker. A stream request that reaches another worker, or comes after the
plan expired, claims and plans the turn from the database as before.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from arena.battles.turns import TurnPlan


@dataclass(frozen=True)
class _Waiting:
    session_hash: str
    plan: TurnPlan
    expires: float


class PlannedTurns:
    """Plans by battle id, for the session that created the battle only. Bounded in number and
    in age: a plan holds the endpoints' keys in clear, and a battle whose stream is never asked
    for must not keep it. Expired plans are dropped on every access and, with no access at all,
    by a timer set for the oldest plan's expiry (so the keys go even when no battle comes).

    `clock` (monotonic seconds) decides expiry; the timer only wakes the check up, up to
    `timer_slack` seconds late so that one wake-up drops the plans of that stretch together."""

    def __init__(
        self,
        *,
        seconds: float = 60.0,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        timer_slack: float = 1.0,
    ) -> None:
        self._seconds = seconds
        self._timer_slack = timer_slack
        self._capacity = capacity
        self._clock = clock
        self._waiting: OrderedDict[str, _Waiting] = OrderedDict()
        self._claims: dict[str, asyncio.Future[bool]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        self.drop_expired()
        return len(self._waiting)

    def put(self, session_hash: str, plan: TurnPlan) -> None:
        """Keep `plan`; called on the event loop, whose timer drops it when it expires."""
        now = self._clock()
        self.drop_expired()
        while len(self._waiting) >= self._capacity:
            self._waiting.popitem(last=False)
        self._waiting[plan.battle_id] = _Waiting(session_hash, plan, now + self._seconds)
        if self._timer is None:
            self._set_timer(now)

    def take(self, battle_id: str, session_hash: str) -> TurnPlan | None:
        """The battle's plan, once, if `session_hash` created it and it has not expired."""
        self.drop_expired()
        waiting = self._waiting.get(battle_id)
        if waiting is None or not secrets.compare_digest(waiting.session_hash, session_hash):
            return None
        del self._waiting[battle_id]
        return waiting.plan

    def drop_expired(self) -> None:
        now = self._clock()
        # Oldest first, all with the same lifetime: stop at the first one still valid.
        while self._waiting:
            oldest = next(iter(self._waiting.values()))
            if oldest.expires > now:
                return
            self._waiting.popitem(last=False)

    def close(self) -> None:
        """Drop every plan and the timer: the app is stopping."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.clear()

    def _set_timer(self, now: float) -> None:
        oldest = next(iter(self._waiting.values()), None)
        if oldest is None:
            return
        delay = max(oldest.expires - now, 0.0) + self._timer_slack
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.drop_expired()
        self._set_timer(self._clock())

    def claiming(self, battle_id: str, claim: asyncio.Future[bool]) -> None:
        """Note the claim written for a planned turn until it is settled."""
        self._claims[battle_id] = claim
        claim.add_done_callback(lambda _: self._claims.pop(battle_id, None))

    async def wait_for_claim(self, battle_id: str) -> None:
        """Wait for this worker's claim on the battle's planned turn, if one is being written:
        another request for the turn (a quick reload, a second tab) then finds it taken, rather
        than taking it first from under a stream already relaying its tokens."""
        claim = self._claims.get(battle_id)
        if claim is not None:
            await asyncio.wait([claim])
