"""The background recompute: after every K new counted votes or T seconds, in a worker process."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from arena import metrics
from arena.background_tasks import stop_task
from arena.battles.integrity import counted_or_duplicate
from arena.config import Settings
from arena.leaderboard.snapshots import (
    RecomputeConfig,
    RecomputeOutcome,
    SeenSnapshots,
    run_recompute,
)
from arena.models import JudgeLabel, RatingSnapshot, Vote
from arena.parent_watch import exit_with_parent

log = logging.getLogger(__name__)

# How often the cheap "anything new?" query runs, at most.
MAX_POLL_SECONDS: Final = 5.0


# How much lower the recompute's CPU priority is than the server's (Unix nice): its processes
# use the cores the requests leave idle, and a request never waits behind a fit.
RECOMPUTE_NICENESS: Final = 10


def start_recompute_worker() -> None:
    """The recompute worker's set-up: a lower CPU priority (its forks inherit it), and an end
    of its own if the server that started it dies."""
    if hasattr(os, "nice"):
        os.nice(RECOMPUTE_NICENESS)
    exit_with_parent()


class RecomputeScheduler:
    """Watches the counted votes and recomputes the snapshots when K new ones or T seconds pass.

    The fit runs in a separate process, so a recompute of a million votes never holds up the
    requests this worker serves; the database lock inside run_recompute keeps one worker at a time
    across processes and hosts. A failed run keeps the last good snapshots, is logged, and is
    retried after T seconds (or K more votes).
    """

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.every_votes = settings.recompute_every_votes
        self.every_seconds = settings.recompute_every_seconds
        self.poll_seconds = min(MAX_POLL_SECONDS, self.every_seconds)
        self.config = RecomputeConfig.from_settings(settings)
        self.engine = engine
        self.watermark: int | None = None  # highest counted vote id at the last attempt
        self.rated_at_attempt = 0
        self.last_attempt = 0.0  # time.monotonic() of the last attempt
        self.last_seen_computed: datetime | None = None
        self.executor: ProcessPoolExecutor | None = None
        self.task: asyncio.Task[None] | None = None
        self.first_due = False
        self.runs = 0
        # Asked for by the operator (the console): run at the next poll, whatever is due.
        self.requested = False
        self.last_outcome: RecomputeOutcome | None = None

    def request(self) -> None:
        self.requested = True

    async def start(self) -> None:
        """Look at the votes once (so the counting starts from what exists now), then watch."""
        try:
            self.first_due = await self._due()
        except Exception:
            log.exception("recompute: the database did not answer at startup; checking again soon")
            self.first_due = False
        self.task = asyncio.create_task(self._loop(), name="ratings-recompute")

    async def stop(self) -> None:
        await stop_task(self.task)
        if self.executor is not None:
            # A run in progress finishes (its transaction commits or rolls back whole).
            await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)

    async def _loop(self) -> None:
        due = self.first_due
        while True:
            try:
                if self.requested:
                    self.requested = False
                    await self._recompute(None)
                elif due or await self._due():
                    await self._recompute(SeenSnapshots(self.last_seen_computed))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recompute: the scheduler's check failed; trying again shortly")
            due = False
            await asyncio.sleep(self.poll_seconds)

    async def _due(self) -> bool:
        async with self.engine.connect() as conn:
            latest = await conn.scalar(select(func.max(RatingSnapshot.computed_at)))
            if self.watermark is None or (
                latest is not None
                and (self.last_seen_computed is None or latest > self.last_seen_computed)
            ):
                # First look, or another worker stored snapshots: start counting from what they saw.
                self.last_seen_computed = latest
                seen_until = select(func.max(Vote.id)).where(counted_or_duplicate())
                if latest is not None:
                    seen_until = seen_until.where(Vote.created_at <= latest)
                self.watermark = int(await conn.scalar(seen_until) or 0)
                self.rated_at_attempt = int(
                    await conn.scalar(
                        select(func.count()).select_from(Vote).where(counted_or_duplicate())
                    )
                    or 0
                )
                self.last_attempt = time.monotonic()
                if latest is None:
                    return self.rated_at_attempt > 0
            new = int(
                await conn.scalar(
                    select(func.count())
                    .select_from(Vote)
                    .where(counted_or_duplicate(), Vote.id > self.watermark)
                )
                or 0
            )
            if new >= self.every_votes:
                return True
            if time.monotonic() - self.last_attempt < self.every_seconds:
                return False
            # T seconds passed: recompute if anything changed, including votes no longer counted.
            counted = int(
                await conn.scalar(
                    select(func.count()).select_from(Vote).where(counted_or_duplicate())
                )
                or 0
            )
            if new == 0 and counted == self.rated_at_attempt:
                # Labels the judge added since change the judged categories' tables.
                labelled = await conn.scalar(select(func.max(JudgeLabel.labelled_at)))
                if labelled is not None and (
                    self.last_seen_computed is None or labelled > self.last_seen_computed
                ):
                    return True
                self.last_attempt = time.monotonic()
                return False
            return True

    async def _recompute(self, seen: SeenSnapshots | None) -> RecomputeOutcome | None:
        async with self.engine.connect() as conn:
            watermark = await conn.scalar(select(func.max(Vote.id)).where(counted_or_duplicate()))
            counted = await conn.scalar(
                select(func.count()).select_from(Vote).where(counted_or_duplicate())
            )
        self.watermark = int(watermark or 0)
        self.rated_at_attempt = int(counted or 0)
        self.last_attempt = time.monotonic()
        if self.executor is None:
            # spawn, not fork: this process runs an event loop and threads.
            self.executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_recompute_worker,
            )
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(self.executor, run_recompute, self.config, seen)
        except Exception:
            log.exception("recompute failed; the last good snapshots stay in place")
            return None
        self.runs += 1
        if outcome.ran:
            self.last_outcome = outcome
            metrics.recompute_ran(outcome.seconds)
            self.last_seen_computed = outcome.computed_at or self.last_seen_computed
            log.info(
                "recompute: %d votes, %d snapshots in %.2f s",
                outcome.n_votes,
                outcome.stored,
                outcome.seconds,
            )
            if outcome.failed:
                log.error(
                    "recompute: categories %s failed and kept their last good snapshot",
                    ", ".join(outcome.failed),
                )
        return outcome
