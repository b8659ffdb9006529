"""Reading the arena's battle and chat streams the way a client does."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class StreamResult:
    events: list[dict[str, Any]]
    headers: httpx.Headers
    # Seconds from the request to each event, to compare how the two sides progressed
    times: list[float] = field(default_factory=list)

    def text(self, side: str) -> str:
        return "".join(
            e["text"] for e in self.events if e.get("side") == side and e["type"] == "delta"
        )

    def last(self, side: str) -> dict[str, Any]:
        return [e for e in self.events if e.get("side") == side][-1]

    @property
    def end(self) -> dict[str, Any]:
        assert self.events and self.events[-1]["type"] == "end", self.events[-3:]
        return self.events[-1]


def read_stream(client: httpx.Client, battle_id: str) -> StreamResult:
    return _read(client, f"/api/battles/{battle_id}/stream")


def read_chat_stream(client: httpx.Client, chat_id: str) -> StreamResult:
    """A direct chat's stream: the battle's event shapes, side `a` only."""
    return _read(client, f"/api/chats/{chat_id}/stream")


def _read(client: httpx.Client, path: str) -> StreamResult:
    started = time.perf_counter()
    events: list[dict[str, Any]] = []
    times: list[float] = []
    with client.stream("GET", path) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                times.append(time.perf_counter() - started)
        return StreamResult(events=events, headers=response.headers, times=times)


def start_battle(client: httpx.Client, prompt: str = "What is the capital of France?") -> str:
    response = client.post("/api/battles", json={"prompt": prompt})
    assert response.status_code == 201, response.text
    return str(response.json()["battle_id"])


def start_chat(client: httpx.Client, model: str, prompt: str) -> str:
    response = client.post("/api/chats", json={"model": model, "prompt": prompt})
    assert response.status_code == 201, response.text
    return str(response.json()["chat_id"])
