"""The turns this worker is relaying right now, by battle, so that a second request for one
(a reload mid-answer, a second tab) follows it from its first token instead of being refused."""

from __future__ import annotations

import secrets

from arena.battles.relay import TurnEvents


class LiveTurns:
    """Battle id to the running turn's events and the session that may read them. An entry
    goes when its turn's events end, so the map holds at most the turns in flight."""

    def __init__(self) -> None:
        self._running: dict[str, tuple[str, TurnEvents]] = {}

    def __len__(self) -> int:
        return len(self._running)

    def add(self, battle_id: str, session_hash: str, events: TurnEvents) -> None:
        self._running[battle_id] = (session_hash, events)

        def ended(_over: object) -> None:
            # Only this turn's entry: a later turn of the battle may have taken the key.
            if self._running.get(battle_id, (None, None))[1] is events:
                del self._running[battle_id]

        events.over.add_done_callback(ended)

    def follow(self, battle_id: str, session_hash: str) -> TurnEvents | None:
        """The running turn's events, from the start, for the session that owns the battle;
        None when this worker runs no turn of it (or it is someone else's)."""
        running = self._running.get(battle_id)
        if running is None or not secrets.compare_digest(running[0], session_hash):
            return None
        owner, events = running
        if events.over.done():
            return None
        return events.follow()
