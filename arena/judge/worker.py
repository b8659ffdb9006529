"""The background labeller: in each worker, it queues voted battles and asks the judge about
them one request per battle, within a rate shared by every worker, never in a request's way.

A failure of any kind (the judge unreachable or refused by the SSRF guard, an error status, a
timeout, an answer too long or without a verdict) leaves the battle unlabelled and retried later
with backoff; nothing the judge does reaches a visitor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from arena.background_tasks import stop_task
from arena.config import Settings
from arena.db import write_session
from arena.job_lock import claim_period
from arena.judge import labels
from arena.judge.endpoint import Judge, current_judge
from arena.judge.verdict import (
    MAX_VERDICT_CHARS,
    PROMPT_VERSION,
    UnreadableVerdict,
    judge_messages,
    read_verdict,
)
from arena.registry.address_guard import ChatCall, guarded_chat
from arena.registry.keys import KeyRing
from arena.upstream.client import Endpoint, Limits, UpstreamEvent
from arena.upstream.http import UpstreamClient

log = logging.getLogger(__name__)

# The rate limit's lease, shared through the job_lock table: one request per slot.
RATE_JOB: Final = "judge-request"
POLL_SECONDS: Final = 2.0
# How often the whole table is looked at again for votes that became counted later.
RESCAN_SECONDS: Final = 600.0
# Requests of one worker in flight at once: a slow judge does not stop the others.
MAX_IN_FLIGHT: Final = 4
# A verdict is short: room for the JSON and a sentence around it, no more.
VERDICT_TOKENS: Final = 400


def judge_limits(settings: Settings) -> Limits:
    return Limits(
        connect=min(settings.connect_timeout, settings.judge_timeout),
        first_token=settings.judge_timeout,
        idle=settings.judge_timeout,
        total=settings.judge_timeout,
        max_answer_bytes=MAX_VERDICT_CHARS,
    )


def _ignore(_event: UpstreamEvent) -> None:
    pass


class JudgeWorker:
    """Labels the battles waiting in the queue (arena/judge/labels.py) while the app runs."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: UpstreamClient,
        keys: KeyRing,
        chat: ChatCall | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.client = client
        self.keys = keys
        # The SSRF guard before every call: a judge host that now resolves inside is refused.
        self.chat = chat or guarded_chat(allow_private=settings.allow_private_endpoints)
        self.limits = judge_limits(settings)
        self.slot = timedelta(seconds=60.0 / settings.judge_requests_per_minute)
        self.hold = timedelta(seconds=settings.judge_timeout + 60.0)
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.tasks: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None
        # The newest vote id when every counted vote's battle was last found queued.
        self.queued_up_to = -1
        self.rescanned_at = 0.0

    def start(self) -> JudgeWorker:
        self.task = asyncio.create_task(self._loop(), name="judge")
        return self

    async def stop(self) -> None:
        await stop_task(self.task)
        for task in list(self.tasks):
            await stop_task(task)

    async def _loop(self) -> None:
        while True:
            try:
                started = await self.start_one()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("judge: a labelling round failed; trying again shortly")
                started = False
            if not started:
                await asyncio.sleep(POLL_SECONDS)

    async def start_one(self) -> bool:
        """Start labelling the battle due longest; False when there is no judge or nothing due.
        Waits for a free place in flight and for the rate limit's next slot first (holding no
        battle meanwhile, so that another worker may take it)."""
        async with self.sessionmaker() as session:
            judge = await current_judge(session, settings=self.settings, keys=self.keys)
        if judge is None:
            return False
        await self._enqueue()
        await self.in_flight.acquire()
        try:
            async with self.sessionmaker() as session:
                due = await labels.any_due(session)
            claimed = None
            if due:
                await self._wait_for_slot()
                async with write_session(self.sessionmaker) as session:
                    claimed = await labels.claim_battle(session, hold=self.hold)
        except BaseException:
            self.in_flight.release()
            raise
        if claimed is None:
            self.in_flight.release()
            return False
        task = asyncio.create_task(self._label_then_release(judge, claimed))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _enqueue(self) -> None:
        """Queue the battles of new counted votes: a write only when a vote came since the last
        time everything was queued (an idle arena is read, not written, every poll), and a full
        look every RESCAN_SECONDS for votes counted later (a flag dismissed)."""
        async with self.sessionmaker() as session:
            latest = await labels.latest_vote_id(session)
            now = time.monotonic()
            if latest == self.queued_up_to and now - self.rescanned_at < RESCAN_SECONDS:
                return
            if not await labels.any_unqueued(session):
                self.queued_up_to, self.rescanned_at = latest, now
                return
            if await labels.waiting_count(session) >= self.settings.judge_queue_size:
                return  # full: no write until labels (or give-ups) make room
        async with write_session(self.sessionmaker) as session:
            complete = await labels.enqueue_voted(
                session, queue_size=self.settings.judge_queue_size
            )
        if complete:
            self.queued_up_to = latest
            self.rescanned_at = now

    async def _wait_for_slot(self) -> None:
        pause = min(self.slot.total_seconds(), POLL_SECONDS)
        while True:
            async with write_session(self.sessionmaker) as session:
                if await claim_period(session, RATE_JOB, self.slot) is not None:
                    return
            await asyncio.sleep(pause)

    async def _label_then_release(self, judge: Judge, claimed: labels.Claimed) -> None:
        try:
            await self.label(judge, claimed)
        except Exception:  # the labeller must outlive anything a judge does
            log.exception("judge: battle %s could not be labelled", claimed.battle_id)
        finally:
            self.in_flight.release()

    async def label(self, judge: Judge, claimed: labels.Claimed) -> None:
        """One request to the judge for one battle, and its outcome stored."""
        async with self.sessionmaker() as session:
            text = await labels.first_turn_text(session, claimed.battle_id)
        if text is None:
            await self._failed(claimed, "the battle's texts were erased", give_up=True)
            return
        endpoint = Endpoint(
            base_url=judge.base_url,
            model=judge.model,
            api_key=judge.api_key,
            max_tokens=VERDICT_TOKENS,
            temperature=0.0,
        )
        messages = judge_messages(text.prompt, text.answer_a, text.answer_b)
        answer = await self.chat(self.client, endpoint, messages, self.limits, _ignore)
        if answer.failure is not None:
            await self._failed(claimed, f"{answer.failure.kind}: {answer.failure.detail}")
            return
        try:
            verdict = read_verdict(answer.text)
        except UnreadableVerdict as exc:
            await self._failed(claimed, f"no verdict in the judge's answer: {exc}")
            return
        async with write_session(self.sessionmaker) as session:
            await labels.store_verdict(
                session, claimed, verdict, judge_model=judge.model, version=PROMPT_VERSION
            )

    async def _failed(self, claimed: labels.Claimed, error: str, *, give_up: bool = False) -> None:
        # (stream_chat has already taken the judge's key out of the detail)
        log.warning("judge: battle %s not labelled: %s", claimed.battle_id, error)
        async with write_session(self.sessionmaker) as session:
            await labels.store_failure(
                session,
                claimed,
                error,
                first_retry_seconds=self.settings.judge_retry_seconds,
                give_up=give_up,
            )
