"""Endpoints that flood the arena (a line or a header that never ends, a gzip bomb) fail their
side at once, while the worker keeps serving everyone else and its memory stays put."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.turns import NEUTRAL_ERROR
from arena.config import Settings
from arena.models import Battle, Message, Model
from tests.arena_process import ArenaProcess
from tests.conftest import add_model, make_settings, run_db
from tests.fake_upstream import FakeUpstream, answer_for, gzip_bomb

HOSTILE = ["endless-line", "endless-first-line", "endless-header", "gzip-bomb"]
HEALTHY = "slow:0.1"  # a word every 100 ms
BATTLES = 20


# A client of its own, in a process of its own (the test's threads share one interpreter lock):
# GET /healthz every millisecond until its stdin closes, then the latencies in seconds, as JSON.
_POLL_HEALTHZ = """
import http.client, json, sys, threading, time
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
latencies = []
while not stop.is_set() or not latencies:
    started = time.perf_counter()
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
    latencies.append(time.perf_counter() - started)
    if len(latencies) == 1:
        print("polling", flush=True)
    time.sleep(0.001)
print(json.dumps(latencies))
"""


@dataclass
class Seen:
    battle_id: str
    prompt: str
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # seconds, event


async def _start(client: httpx.AsyncClient, prompt: str) -> Seen:
    created = await client.post("/api/battles", json={"prompt": prompt})
    assert created.status_code == 201, created.text
    return Seen(str(created.json()["battle_id"]), prompt)


async def _follow(client: httpx.AsyncClient, seen: Seen) -> None:
    started = time.perf_counter()
    async with client.stream("GET", f"/api/battles/{seen.battle_id}/stream") as stream:
        assert stream.status_code == 200, await stream.aread()
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                seen.events.append((time.perf_counter() - started, json.loads(line[6:])))


async def _round(
    url: str, watch: Callable[[], AbstractContextManager[None]] | None = None
) -> list[Seen]:
    """Start BATTLES battles, each by a visitor of its own, then follow them all at once;
    `watch` is entered around the following only (what started the battles is not measured)."""
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for _ in range(BATTLES)]
    try:
        battles = await asyncio.gather(
            *(_start(client, f"question {n}") for n, client in enumerate(clients))
        )
        with watch() if watch is not None else contextlib.nullcontext():
            await asyncio.gather(*map(_follow, clients, battles))
        return battles
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


@dataclass
class Watch:
    """/healthz latencies seen by another client meanwhile, and the worker's largest RSS."""

    port: int
    pid: int
    latencies: list[float] = field(default_factory=list)
    peak_rss: int = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        poller = subprocess.Popen(
            [sys.executable, "-c", _POLL_HEALTHZ, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample_rss, args=(stop,), daemon=True)
        sampler.start()
        assert poller.stdout is not None
        try:
            assert poller.stdout.readline() == b"polling\n"
            yield
        finally:
            stop.set()
            sampler.join(timeout=10)
            output, _ = poller.communicate(timeout=60)
        assert poller.returncode == 0
        self.latencies = sorted(json.loads(output)[1:])  # the first made the connection

    def _sample_rss(self, stop: threading.Event) -> None:
        worker = psutil.Process(self.pid)
        while not stop.wait(0.01):
            self.peak_rss = max(self.peak_rss, worker.memory_info().rss)


def _sides(
    settings: Settings, battle_ids: list[str]
) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(battle, side) -> (the upstream model behind it, the error the operator sees)."""

    async def work(session: AsyncSession) -> dict[tuple[str, str], tuple[str, str | None]]:
        upstream = dict((await session.execute(select(Model.id, Model.upstream_model))).all())
        battles = await session.scalars(select(Battle).where(Battle.id.in_(battle_ids)))
        messages = await session.scalars(select(Message).where(Message.battle_id.in_(battle_ids)))
        errors = {(m.battle_id, m.side.value): m.error for m in messages}
        sides = {}
        for battle in battles:
            for side, model_id in (("a", battle.model_a_id), ("b", battle.model_b_id)):
                sides[(battle.id, side)] = (upstream[model_id], errors.get((battle.id, side)))
        return sides

    return run_db(settings, work)


@pytest.mark.slow
def test_hostile_endpoints_fail_fast_and_do_not_stall_the_worker(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    gzip_bomb()  # made once here, not in the fake upstream's event loop
    settings = make_settings(
        database_url,
        tmp_path,
        first_token_timeout=3.0,
        idle_timeout=2.0,
        total_timeout=8.0,
        battle_rate_limit="",
        battle_ip_rate_limit="",
        circuit_breaker_failures=0,
        rigging_scan_seconds=0,
    )
    for upstream_model in [HEALTHY, *HOSTILE]:
        add_model(settings, upstream_model, fake_upstream.base_url, upstream_model)
    arena = ArenaProcess(settings, tmp_path / "arena.log").start()
    try:
        assert arena.process is not None
        asyncio.run(_round(arena.url))  # warms the worker up
        before = arena.rss()
        watch = Watch(arena.port, arena.process.pid, peak_rss=before)
        battles = asyncio.run(_round(arena.url, watch))
    finally:
        arena.stop()

    sides = _sides(settings, [seen.battle_id for seen in battles])
    healthy_times = []
    for seen in battles:
        assert seen.events[-1][1] == {"type": "end", "status": "failed"}
        for side in ("a", "b"):
            upstream_model, error = sides[(seen.battle_id, side)]
            mine = [(at, e) for at, e in seen.events if e.get("side") == side]
            at, last = mine[-1]
            if upstream_model == HEALTHY:
                assert last["type"] == "done", last
                text = "".join(e["text"] for _, e in mine if e["type"] == "delta")
                assert text == answer_for(seen.prompt)
                healthy_times.append(at)
            else:
                assert last == {"side": side, "type": "error", "message": NEUTRAL_ERROR}
                # Cut short by a bound, not left to run into a timeout.
                assert error is not None and error.split(":")[0] in ("too_large", "protocol"), (
                    upstream_model,
                    error,
                )
                assert at < 2.0, (upstream_model, at)
    assert {model for model, _ in sides.values()} >= set(HOSTILE)

    # The healthy endpoint takes 1.4 s (14 words, 100 ms apart) when nothing else runs.
    assert healthy_times, "no battle paired the healthy endpoint with a hostile one"
    assert max(healthy_times) < 3.0, healthy_times

    # Before the bounds, /healthz waited 3.6 to 4.2 s here (p99 of about 30 requests: most of
    # the time went on waiting) and the worker grew by 500 to 700 MB. Now the p99 is 4 to 7
    # ms on a quiet two-core machine, and about 100 ms with the suite's other processes on the
    # same cores: the bound sits well between that and the stall. The slowest 1 % are left out:
    # a pass of the cycle collector over the old generation can take a few hundred ms there
    # (at least the slowest one: with the suite's processes on two cores, the round may see
    # fewer than a hundred requests; a stall shows in the p99 whatever their number).
    latencies = watch.latencies
    assert len(latencies) >= 50, latencies
    p99 = latencies[min(math.ceil(len(latencies) * 0.99), len(latencies) - 1) - 1]
    assert p99 < 0.5, (
        f"/healthz p99 {p99 * 1000:.0f} ms, slowest {latencies[-1] * 1000:.0f} ms, "
        f"{len(latencies)} requests"
    )
    growth_mb = (watch.peak_rss - before) / 2**20
    assert growth_mb < 32, f"the worker's RSS grew by {growth_mb:.0f} MB ({before / 2**20:.0f} MB)"
