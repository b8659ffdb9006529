"""Prometheus metrics: what the arena counts for its operator, and the `/metrics` exposition.

The metrics live at module level, as prometheus_client expects, so that the services that
observe them need no handle. With several workers, `arena serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh folder before the workers start: each process then writes
its values to files there and the exposition sums them (prometheus_client's multiprocess mode).

Anonymity: a series labelled with a model (or with the kind of an upstream failure, which can
tell one endpoint from another) moves while a battle is under way, so a visitor who reads
`/metrics` before and after a battle would learn its pair. Those series are recorded only when
`ARENA_METRICS_TOKEN` keeps `/metrics` from the public; without a token the exposition holds
only series that name no model.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from arena.background_tasks import stop_task
from arena.config import Settings
from arena.errors import NotFound, Unauthenticated

MULTIPROCESS_DIR_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"
# Seconds between two samples of the in-memory queues (see QueueSampler).
QUEUE_SAMPLE_SECONDS: Final = 5.0

_LATENCY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

BATTLES_STARTED: Final = Counter("arena_battles_started_total", "Battles created.")
TURNS: Final = Counter(
    "arena_turns_total",
    "Turns (the first prompt or a follow-up) over, by outcome: ready (both sides answered, the "
    "battle can be voted on), failed, or withheld (by moderation).",
    ["outcome"],
)
UPSTREAM_ERRORS: Final = Counter(
    "arena_upstream_errors_total",
    "Sides that ended in an error, by kind (only with ARENA_METRICS_TOKEN set).",
    ["kind"],
)
VOTES: Final = Counter(
    "arena_votes_total", "Votes stored, by whether they count in the ratings.", ["counted"]
)
VOTES_EXCLUDED: Final = Counter(
    "arena_votes_excluded_total",
    "Reasons given for votes that do not count at the moment they are cast (a vote may have "
    "several; the rigging scan excludes more later, see /api/admin/flags).",
    ["reason"],
)
FIRST_TOKEN_SECONDS: Final = Histogram(
    "arena_model_first_token_seconds",
    "Seconds from the request to a model's first token (only with ARENA_METRICS_TOKEN set).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
ANSWER_SECONDS: Final = Histogram(
    "arena_model_answer_seconds",
    "Seconds a model took for a whole answer (only with ARENA_METRICS_TOKEN set).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
OPEN_STREAMS: Final = Gauge(
    "arena_open_streams",
    "Battle streams being sent to visitors now.",
    multiprocess_mode="livesum",
)
RATE_LIMIT_REFUSALS: Final = Counter(
    "arena_rate_limit_refusals_total",
    "Requests refused by a rate limit, by action (battle, vote) and scope (session, ip).",
    ["action", "scope"],
)
MODERATION_REFUSALS: Final = Counter(
    "arena_moderation_refusals_total",
    "Prompts refused and turns' answers withheld by moderation, by stage (prompt, answer) and "
    "reason (blocklist, blocklist_timeout, unavailable, flagged:<category>). No series names a "
    "model: a withheld turn's count moves for both sides alike.",
    ["stage", "reason"],
)
MODERATION_UNAVAILABLE: Final = Counter(
    "arena_moderation_unavailable_total",
    "Moderation requests that got no usable verdict (down, too slow, an error status, an answer "
    "that does not parse), by stage, whether battles then stopped or went on.",
    ["stage"],
)
RECOMPUTE_SECONDS: Final = Histogram(
    "arena_recompute_seconds",
    "Duration of the rating recomputes that ran.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300),
)
QUEUE_DEPTH: Final = Gauge(
    "arena_queue_depth",
    "Items waiting in a worker's queues, summed over live workers: planned_turns (first turns "
    "waiting for their stream request), writes (database writes waiting for the writer thread).",
    ["queue"],
    multiprocess_mode="livesum",
)


@dataclass
class _Recording:
    """What this process records: nothing while metrics are off (the default)."""

    enabled: bool = False
    per_model: bool = False


_recording = _Recording()


def configure(settings: Settings) -> None:
    """Called once by the app's lifespan: switch recording on as the settings say."""
    _recording.enabled = settings.metrics
    _recording.per_model = settings.metrics and settings.metrics_token is not None
    if not _recording.per_model:
        # Nothing an earlier app of this process recorded under another configuration.
        for metric in (UPSTREAM_ERRORS, FIRST_TOKEN_SECONDS, ANSWER_SECONDS):
            metric.clear()


def battle_started() -> None:
    if _recording.enabled:
        BATTLES_STARTED.inc()


@dataclass(frozen=True)
class SideTimes:
    """One side's answer as the metrics see it."""

    model: str
    first_token_ms: float | None
    duration_ms: float
    failure_kind: str | None


def turn_over(ready: bool, sides: Iterable[SideTimes], *, withheld: bool = False) -> None:
    if not _recording.enabled:
        return
    TURNS.labels("withheld" if withheld else "ready" if ready else "failed").inc()
    if not _recording.per_model:
        return
    for side in sides:
        if side.failure_kind is not None:
            UPSTREAM_ERRORS.labels(side.failure_kind).inc()
            continue
        if side.first_token_ms is not None:
            FIRST_TOKEN_SECONDS.labels(side.model).observe(side.first_token_ms / 1000)
        ANSWER_SECONDS.labels(side.model).observe(side.duration_ms / 1000)


def vote_stored(flags: Iterable[str]) -> None:
    if not _recording.enabled:
        return
    reasons = list(flags)
    VOTES.labels("false" if reasons else "true").inc()
    for reason in reasons:
        VOTES_EXCLUDED.labels(reason).inc()


def rate_limited(action: str, scope: str) -> None:
    if _recording.enabled:
        RATE_LIMIT_REFUSALS.labels(action, scope).inc()


def moderation_refused(stage: str, reason: str) -> None:
    if _recording.enabled:
        MODERATION_REFUSALS.labels(stage, reason).inc()


def moderation_unavailable(stage: str) -> None:
    if _recording.enabled:
        MODERATION_UNAVAILABLE.labels(stage).inc()


def stream_opened() -> None:
    if _recording.enabled:
        OPEN_STREAMS.inc()


def stream_closed() -> None:
    if _recording.enabled:
        OPEN_STREAMS.dec()


def recompute_ran(seconds: float) -> None:
    if _recording.enabled:
        RECOMPUTE_SECONDS.observe(seconds)


class QueueSampler:
    """Samples this worker's in-memory queues every few seconds into arena_queue_depth (a
    gauge summed over live workers in multiprocess mode)."""

    def __init__(self, queues: Mapping[str, Callable[[], int]]) -> None:
        self.queues = queues
        self.task: asyncio.Task[None] | None = None

    def start(self) -> QueueSampler:
        if _recording.enabled:
            self.task = asyncio.create_task(self._loop(), name="metrics-queues")
        return self

    def sample(self) -> None:
        for name, depth in self.queues.items():
            QUEUE_DEPTH.labels(name).set(depth())

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(QUEUE_SAMPLE_SECONDS)

    async def stop(self) -> None:
        await stop_task(self.task)


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """An empty folder for the workers' metric files, named in the environment the workers
    inherit; called by `arena serve` before it starts several workers."""
    folder = data_dir / "metrics"
    shutil.rmtree(folder, ignore_errors=True)  # values of a previous run would be summed in
    folder.mkdir(parents=True)
    os.environ[MULTIPROCESS_DIR_VARIABLE] = str(folder)
    return folder


def worker_exited() -> None:
    """Drop this process's live gauges from the sums (multiprocess mode only)."""
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        prometheus_multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def exposition() -> bytes:
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if not settings.metrics:
        raise NotFound("Metrics are off on this arena (the operator sets ARENA_METRICS=on).")
    if settings.metrics_token is not None:
        expected = f"Bearer {settings.metrics_token.get_secret_value()}"
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthenticated(
                "/metrics needs the header Authorization: Bearer <ARENA_METRICS_TOKEN>."
            )
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
