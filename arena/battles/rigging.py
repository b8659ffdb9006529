"""Vote-rigging defence: sessions whose decisive votes are improbable under the current ratings.

The test, per session and per model m the session voted on: under the ratings R, the session's
decisive battles involving m are independent Bernoulli trials, m winning battle k with
p_k = 1 / (1 + 10 ** ((R_opponent - R_m) / 400)). The number of wins W of m is then
Poisson-binomial; a two-sided exact tail probability below alpha / (number of models tested for
that session) (Bonferroni) flags the session. A voter who always picks a model they recognise,
or always votes against one, is caught after a handful of votes when the model is not already
the favourite; honest voters disagree with the ratings in both directions and stay well inside.

Flagged sessions go to `flagged_session` with the evidence, and every vote of theirs (past and
later ones, at each scan) is kept with the flag `suspicious_session` and no longer counted.

Sessions too thin for this test are judged together by the pooled tests (pooled_rigging.py);
the sessions they flag are kept the same way, under their own reasons.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final

import numpy as np
from sqlalchemy import Text, cast, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from arena.background_tasks import stop_task
from arena.battles.flag_review import DISMISSED
from arena.battles.integrity import POOLED_ADDRESS, POOLED_ALIKE, SUSPICIOUS_SESSION
from arena.battles.pooled_rigging import pooled_suspicions
from arena.battles.ratings_view import latest_ratings
from arena.battles.settled import drawn
from arena.config import Settings
from arena.db import begin_write
from arena.job_lock import claim_period
from arena.models import Battle, FlaggedSession, Model, Vote, Winner, utcnow

log = logging.getLogger(__name__)

# Beyond this many trials the exact distribution costs more than it tells; a normal
# approximation with continuity correction is accurate there.
EXACT_UP_TO: Final = 2000
_BATCH: Final = 500
SCAN_JOB: Final = "rigging-scan"
# The reasons a scan flags a session for; each excludes all of the session's votes.
SCAN_REASONS: Final = (SUSPICIOUS_SESSION, POOLED_ADDRESS, POOLED_ALIKE)


@dataclass(frozen=True)
class DecisiveVote:
    session_hash: str
    winner: str
    loser: str
    address_hash: str = ""


@dataclass(frozen=True)
class Suspicion:
    session_hash: str
    model: str
    votes: int
    wins: int
    expected_wins: float
    p_value: float  # two-sided, before the Bonferroni factor
    tested_models: int

    def detail(self) -> str:
        return (
            f"{self.model} won {self.wins} of this session's {self.votes} decisive votes on it, "
            f"where the ratings expect {self.expected_wins:.1f}; two-sided p = {self.p_value:.2g} "
            f"over {self.tested_models} model(s) tested"
        )


def win_probability(rating: float, opponent: float) -> float:
    return float(1.0 / (1.0 + 10.0 ** ((opponent - rating) / 400.0)))


def two_sided_p_value(probabilities: Sequence[float], wins: int) -> float:
    """P(a result at least this far out, either way) when the wins are Poisson-binomial."""
    ps = np.clip(np.asarray(probabilities, dtype=float), 0.0, 1.0)
    if len(ps) <= EXACT_UP_TO:
        pmf = np.ones(1)
        for p in ps:
            pmf = np.convolve(pmf, [1.0 - p, p])
        upper = float(pmf[wins:].sum())
        lower = float(pmf[: wins + 1].sum())
    else:
        mean = float(ps.sum())
        sd = math.sqrt(max(float((ps * (1 - ps)).sum()), 1e-12))
        upper = 0.5 * math.erfc((wins - 0.5 - mean) / sd / math.sqrt(2))
        lower = 0.5 * math.erfc((mean - wins - 0.5) / sd / math.sqrt(2))
    return min(1.0, 2.0 * min(upper, lower))


def session_suspicions(
    votes: Iterable[DecisiveVote],
    ratings: Mapping[str, float],
    *,
    alpha: float,
    min_votes: int,
) -> list[Suspicion]:
    """The sessions to flag, each with its most improbable model. Votes between models without
    a rating are left out of the test."""
    trials: dict[str, dict[str, list[tuple[float, int]]]] = defaultdict(lambda: defaultdict(list))
    for vote in votes:
        if vote.winner not in ratings or vote.loser not in ratings:
            continue
        p_winner = win_probability(ratings[vote.winner], ratings[vote.loser])
        by_model = trials[vote.session_hash]
        by_model[vote.winner].append((p_winner, 1))
        by_model[vote.loser].append((1.0 - p_winner, 0))
    found = []
    for session_hash, by_model in trials.items():
        tested = {model: t for model, t in by_model.items() if len(t) >= min_votes}
        worst: Suspicion | None = None
        for model, model_trials in tested.items():
            ps = [p for p, _ in model_trials]
            wins = sum(won for _, won in model_trials)
            p_value = two_sided_p_value(ps, wins)
            if p_value * len(tested) < alpha and (worst is None or p_value < worst.p_value):
                worst = Suspicion(
                    session_hash, model, len(ps), wins, float(sum(ps)), p_value, len(tested)
                )
        if worst is not None:
            found.append(worst)
    return found


@dataclass(frozen=True)
class Verdict:
    session_hash: str
    reason: str
    detail: str


def rigging_verdicts(
    votes: Sequence[DecisiveVote],
    ratings: Mapping[str, float],
    *,
    settings: Settings,
    tested: Collection[str] | None = None,
) -> list[Verdict]:
    """Every session to flag, with its reason and evidence: the per-session test on the sessions
    in `tested` (all when None), the pooled tests on all of `votes` but the sessions the first
    flags (a pool of sessions is evidence for the sessions too thin to judge alone)."""
    thin_out = votes if tested is None else [v for v in votes if v.session_hash in tested]
    verdicts = [
        Verdict(s.session_hash, SUSPICIOUS_SESSION, s.detail())
        for s in session_suspicions(
            thin_out, ratings, alpha=settings.rigging_alpha, min_votes=settings.rigging_min_votes
        )
    ]
    alone = {v.session_hash for v in verdicts}
    for pooled in pooled_suspicions(
        [v for v in votes if v.session_hash not in alone],
        ratings,
        alpha=settings.rigging_alpha,
        pool_addresses=settings.rigging_pool_addresses,
        alike_min_votes=settings.rigging_alike_min_votes,
    ):
        verdicts += [Verdict(s, pooled.reason, pooled.detail()) for s in pooled.sessions]
    return verdicts


@dataclass(frozen=True)
class ScanOutcome:
    sessions_tested: int
    sessions_flagged: int
    votes_excluded: int


def _flagged_sessions() -> Any:
    return select(FlaggedSession.session_hash).where(FlaggedSession.reason.in_(SCAN_REASONS))


def _decisive_votes_query() -> Any:
    return (
        select(Vote.session_hash, Vote.ip_hash, Vote.winner, Battle.model_a_id, Battle.model_b_id)
        .join(Battle, Battle.id == Vote.battle_id)
        .where(
            Vote.winner.in_([Winner.model_a, Winner.model_b]),
            Vote.session_hash.not_in(_flagged_sessions()),
            # A visitor who chose the models by name may well back one of them every time.
            drawn(),
        )
    )


async def _decisive_votes(
    session: AsyncSession, only: Sequence[str] | None = None
) -> list[DecisiveVote]:
    """The decisive votes, counted or not, of the sessions no scan has flagged yet (of those in
    `only`, when given)."""
    names = dict((await session.execute(select(Model.id, Model.name))).all())
    batches: list[Any] = []
    if only is None:
        batches.append(_decisive_votes_query())
    else:
        for start in range(0, len(only), _BATCH):
            batches.append(
                _decisive_votes_query().where(Vote.session_hash.in_(only[start : start + _BATCH]))
            )
    found = []
    for query in batches:
        rows = await session.stream(query.execution_options(yield_per=_BATCH))
        async for session_hash, ip_hash, winner, a_id, b_id in rows:
            a, b = names[a_id], names[b_id]
            won_a = winner == Winner.model_a
            found.append(DecisiveVote(session_hash, a if won_a else b, b if won_a else a, ip_hash))
    return found


async def exclude_flagged_votes(session: AsyncSession) -> int:
    """Keep every vote of a flagged session, marked with the reason and no longer counted."""
    marked: set[int] = set()
    for reason in SCAN_REASONS:
        votes = await session.scalars(
            select(Vote).where(
                Vote.session_hash.in_(
                    select(FlaggedSession.session_hash).where(
                        FlaggedSession.reason == reason,
                        # A flag the operator dismissed excludes nothing any more.
                        or_(
                            FlaggedSession.decision.is_(None),
                            FlaggedSession.decision != DISMISSED,
                        ),
                    )
                ),
                cast(Vote.flags, Text).not_like(f'%"{reason}"%'),
            )
        )
        for vote in votes:
            vote.flags = sorted({*vote.flags, reason})
            vote.counted = False
            marked.add(vote.id)
    await session.flush()
    return len(marked)


async def judge_sessions(
    session: AsyncSession, *, settings: Settings, since: datetime | None = None
) -> tuple[list[str], list[Verdict]]:
    """The sessions that voted since `since` (all when None) and the verdicts of the latest
    ratings on them (and, pooled, on everyone); reads only."""
    rated = await latest_ratings(session)
    if not rated:
        return [], []
    recent = select(Vote.session_hash).distinct()
    if since is not None:
        recent = recent.where(Vote.created_at >= since)
    tested = list((await session.scalars(recent)).all())
    pooled = settings.rigging_pool_addresses or settings.rigging_alike_min_votes > 0
    # The pooled tests weigh every session's votes together, old and new; the per-session
    # test needs only the sessions that voted since the last scan.
    votes = await _decisive_votes(session, None if pooled else tested)
    # Seconds of arithmetic on a large arena: off the event loop, which serves visitors.
    verdicts = await asyncio.to_thread(
        partial(
            rigging_verdicts,
            votes,
            {name: r.rating for name, r in rated.items()},
            settings=settings,
            tested=set(tested),
        )
    )
    return tested, verdicts


async def record_verdicts(
    session: AsyncSession, tested: Sequence[str], verdicts: Sequence[Verdict]
) -> ScanOutcome:
    """Store the verdicts and exclude the votes of every flagged session (idempotent)."""
    for verdict in verdicts:
        session.add(
            FlaggedSession(
                session_hash=verdict.session_hash,
                reason=verdict.reason,
                detail=verdict.detail,
                created_at=utcnow(),
            )
        )
    for reason, detail in sorted({(v.reason, v.detail) for v in verdicts}):
        log.warning("rigging scan: flagged sessions (%s): %s", reason, detail)
    await session.flush()
    excluded = await exclude_flagged_votes(session)
    return ScanOutcome(
        sessions_tested=len(tested),
        sessions_flagged=len({v.session_hash for v in verdicts}),
        votes_excluded=excluded,
    )


async def scan_sessions(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    since: datetime | None = None,
) -> ScanOutcome:
    """Test the sessions that voted since `since` (all when None) against the latest ratings,
    and record what is found.

    Two transactions: reading every vote and testing them takes seconds on a large arena, and
    on SQLite a write transaction holds the one write lock that every vote waits for. A session
    flagged by another worker in between is recorded twice, which the report shows once."""
    async with sessionmaker() as session:
        tested, verdicts = await judge_sessions(session, settings=settings, since=since)
    async with sessionmaker() as session, session.begin():
        await begin_write(session)
        return await record_verdicts(session, tested, verdicts)


class RiggingScanner:
    """Runs scan_sessions every `rigging_scan_seconds` in the background of a worker.

    Every worker of every instance wakes each period, and the first to claim the period
    (job_lock.claim_period, a short write of its own) scans; the others go back to sleep."""

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.task: asyncio.Task[None] | None = None
        self.last_scan_started: datetime | None = None

    def start(self) -> None:
        if self.settings.rigging_scan_seconds > 0:
            self.task = asyncio.create_task(self._loop(), name="rigging-scan")

    async def scan_once(self) -> ScanOutcome:
        started = utcnow()
        outcome = await scan_sessions(
            self.sessionmaker, settings=self.settings, since=self.last_scan_started
        )
        self.last_scan_started = started
        return outcome

    async def scan_if_due(self) -> ScanOutcome | None:
        """A scan if no worker has scanned in this period, else None. It tests the sessions that
        voted since the period before began, wherever that scan ran (the pooled tests read
        every vote in any case)."""
        # A little short of the interval: the worker that scanned last wakes again just after its
        # claim has expired, so the scans keep their rhythm instead of skipping every other one.
        period = timedelta(seconds=self.settings.rigging_scan_seconds * 0.9)
        async with self.sessionmaker() as session, session.begin():
            await begin_write(session)
            claim = await claim_period(session, SCAN_JOB, period)
        if claim is None:
            return None
        return await scan_sessions(
            self.sessionmaker, settings=self.settings, since=claim.previous_start
        )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rigging_scan_seconds)
            try:
                outcome = await self.scan_if_due()
                if outcome is not None and (outcome.sessions_flagged or outcome.votes_excluded):
                    log.info("rigging scan: %s", outcome)
            except Exception:
                log.exception("rigging scan failed; it runs again at the next interval")

    async def stop(self) -> None:
        await stop_task(self.task)
