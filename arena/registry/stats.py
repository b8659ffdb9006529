"""An owner's view of its model: votes, win rate, rating, errors, latency, sampling share.

Every figure drawn from battles counts settled battles only (battles/settled.py): an owner who
read its stats before and after someone's battle started, or answered, must not learn that its
model is in it while the battle can still be voted on. Direct chats are not anonymous (their
visitor chose the model): their counts are current, and never carry a prompt or a visitor.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.settled import drawn, settled
from arena.models import (
    Battle,
    BattleMode,
    Chat,
    ChatFeedback,
    ChatMessage,
    Feedback,
    Message,
    Model,
    ModelStatus,
    ModelStatusEvent,
    RatingSnapshot,
    Vote,
    Winner,
    utcnow,
)
from arena.registry.failure_reasons import explain_stored_error
from arena.registry.health import answers_of, chat_answers_of
from arena.registry.keys import KeyRing
from arena.registry.schemas import (
    ChatAnswersOut,
    ChatFeedbackOut,
    ModelOut,
    ModelStats,
    NamedVotesOut,
    Percentiles,
    RatingOut,
    RecentError,
    StatusEventOut,
)

LATENCY_WINDOW: Final = 1000
EVENTS_SHOWN: Final = 20
ERRORS_SHOWN: Final = 5
# The leaderboard's main table: Bradley-Terry over every counted vote (see leaderboard/snapshots).
RATING_CATEGORY: Final = "all"
RATING_METHOD: Final = "bt"


def percentiles(values: list[float]) -> Percentiles:
    """Nearest-rank percentiles (the smallest value with at least p% of the values at or below)."""
    ordered = sorted(values)

    def rank(p: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1)

    return Percentiles(samples=len(ordered), p50=rank(50), p90=rank(90), p99=rank(99))


async def _rating(session: AsyncSession, name: str) -> RatingOut | None:
    snapshot = await session.scalar(
        select(RatingSnapshot)
        .where(RatingSnapshot.category == RATING_CATEGORY, RatingSnapshot.view == "")
        .order_by(
            (RatingSnapshot.method == RATING_METHOD).desc(),
            RatingSnapshot.computed_at.desc(),
            RatingSnapshot.id.desc(),
        )
        .limit(1)
    )
    if snapshot is None:
        return None
    row: dict[str, Any] | None = next(
        (r for r in snapshot.rows if isinstance(r, dict) and r.get("model") == name), None
    )
    if row is None:
        return None

    def number(key: str) -> float | None:
        value = row.get(key)
        return float(value) if isinstance(value, int | float) else None

    rank = row.get("rank")
    votes = row.get("votes")
    return RatingOut(
        method=snapshot.method,
        category=snapshot.category,
        computed_at=snapshot.computed_at,
        rating=number("rating"),
        ci_lower=number("ci_lower"),
        ci_upper=number("ci_upper"),
        rank=rank if isinstance(rank, int) else None,
        votes=votes if isinstance(votes, int) else None,
        win_rate=number("win_rate"),
    )


async def _sampling_share(
    session: AsyncSession,
    model_id: int,
    days: int | None,
    *,
    now: datetime,
    over: ColumnElement[bool],
) -> float | None:
    """The model's share of the seats (two per battle) in the settled battles started in the
    last `days` days (all of them with None): the realised share of /api/sampling."""
    in_battle = or_(Battle.model_a_id == model_id, Battle.model_b_id == model_id)
    total = select(func.count(Battle.id)).where(over, drawn())
    mine = select(func.count(Battle.id)).where(in_battle, over, drawn())
    if days is not None:
        since = now - timedelta(days=days)
        total = total.where(Battle.created_at >= since)
        mine = mine.where(Battle.created_at >= since)
    battles = await session.scalar(total) or 0
    if not battles:
        return None
    return round((await session.scalar(mine) or 0) / (2 * battles), 4)


async def failure_streak(session: AsyncSession, model_id: int, *, over: ColumnElement[bool]) -> int:
    """The model's failed answers in a row among settled battles and direct chats: those since
    its latest answer there and its latest activation, the things that reset the circuit
    breaker's count (health.py). The breaker's own count also resets on an answer in a battle
    still open, and an owner who saw that reset would know its model is in that battle; this
    one waits for the battle to settle."""
    mine = and_(answers_of(model_id), over)
    answered_at = await session.scalar(
        select(func.max(Message.created_at))
        .join(Battle, Battle.id == Message.battle_id)
        .where(mine, Message.error.is_(None))
    )
    chat_answers = chat_answers_of(model_id)
    chat_answered_at = await session.scalar(
        select(func.max(ChatMessage.created_at))
        .join(Chat, Chat.id == ChatMessage.chat_id)
        .where(chat_answers, ChatMessage.error.is_(None))
    )
    activated_at = await session.scalar(
        select(func.max(ModelStatusEvent.created_at)).where(
            ModelStatusEvent.model_id == model_id, ModelStatusEvent.status == ModelStatus.active
        )
    )
    failures = (
        select(func.count(Message.id))
        .join(Battle, Battle.id == Message.battle_id)
        .where(mine, Message.error.is_not(None))
    )
    chat_failures = (
        select(func.count(ChatMessage.id))
        .join(Chat, Chat.id == ChatMessage.chat_id)
        .where(chat_answers, ChatMessage.error.is_not(None))
    )
    resets = [m for m in (answered_at, chat_answered_at, activated_at) if m is not None]
    if resets:
        failures = failures.where(Message.created_at > max(resets))
        chat_failures = chat_failures.where(ChatMessage.created_at > max(resets))
    return int(await session.scalar(failures) or 0) + int(await session.scalar(chat_failures) or 0)


async def model_out(
    session: AsyncSession, *, model: Model, window: timedelta, owner_email: str | None = None
) -> ModelOut:
    """An endpoint as its owner (or the operator) sees it; its run of failures as of the
    settled battles (`failure_streak`)."""
    streak = await failure_streak(session, model.id, over=settled(now=utcnow(), window=window))
    return ModelOut(
        id=model.id,
        name=model.name,
        organization=model.organization,
        license=model.license,
        description=model.description,
        base_url=model.base_url,
        model=model.upstream_model,
        has_api_key=model.api_key_encrypted is not None,
        api_key_last4=model.api_key_last4,
        max_tokens=model.max_tokens,
        temperature=model.temperature,
        system_prompt=model.system_prompt,
        supports_images=model.supports_images,
        status=model.status,
        status_reason=model.status_reason,
        sampling_weight=model.sampling_weight,
        consecutive_failures=streak,
        created_at=model.created_at,
        activated_at=model.activated_at,
        paused_at=model.paused_at,
        retired_at=model.retired_at,
        owner_email=owner_email,
    )


async def model_stats(
    session: AsyncSession,
    *,
    model: Model,
    keys: KeyRing,
    breaker_threshold: int,
    window: timedelta,
) -> ModelStats:
    """What the owner's stats page shows; `window` is the vote window (settled.py)."""
    now = utcnow()
    over = settled(now=now, window=window)
    events = (
        await session.scalars(
            select(ModelStatusEvent)
            .where(ModelStatusEvent.model_id == model.id)
            .order_by(ModelStatusEvent.created_at.desc(), ModelStatusEvent.id.desc())
            .limit(EVENTS_SHOWN)
        )
    ).all()
    battles = (
        await session.scalar(
            select(func.count(Battle.id)).where(
                or_(Battle.model_a_id == model.id, Battle.model_b_id == model.id), over
            )
        )
        or 0
    )
    answers_query = select(Message).join(Battle, Battle.id == Message.battle_id)
    mine = and_(answers_of(model.id), over)
    answers = (
        await session.scalar(
            select(func.count(Message.id)).join(Battle, Battle.id == Message.battle_id).where(mine)
        )
        or 0
    )
    failed = (
        await session.scalar(
            select(func.count(Message.id))
            .join(Battle, Battle.id == Message.battle_id)
            .where(mine, Message.error.is_not(None))
        )
        or 0
    )
    try:
        api_key = keys.decrypt(model.api_key_encrypted) if model.api_key_encrypted else None
    except ValueError:
        api_key = None

    def explained(error: str | None) -> str:
        return explain_stored_error(
            error or "", base_url=model.base_url, api_key=api_key, model=model.upstream_model
        ).reason

    recent_errors = [
        RecentError(at=m.created_at, error=explained(m.error))
        for m in await session.scalars(
            answers_query.where(mine, Message.error.is_not(None))
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(ERRORS_SHOWN)
        )
    ]
    recent_errors += [
        RecentError(at=at, error=explained(error), source="chat")
        for at, error in await session.execute(
            select(ChatMessage.created_at, ChatMessage.error)
            .join(Chat, Chat.id == ChatMessage.chat_id)
            .where(chat_answers_of(model.id), ChatMessage.error.is_not(None))
            .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
            .limit(ERRORS_SHOWN)
        )
    ]
    recent_errors = sorted(recent_errors, key=lambda e: e.at, reverse=True)[:ERRORS_SHOWN]
    timings = (
        await session.execute(
            select(Message.first_token_ms, Message.duration_ms)
            .join(Battle, Battle.id == Message.battle_id)
            .where(mine, Message.error.is_(None))
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(LATENCY_WINDOW)
        )
    ).all()
    votes = (
        await session.execute(
            select(Vote.winner, Vote.counted, Vote.flags, Battle.model_a_id, Battle.mode)
            .join(Battle, Battle.id == Vote.battle_id)
            .where(or_(Battle.model_a_id == model.id, Battle.model_b_id == model.id), over)
        )
    ).all()
    outcomes: Counter[str] = Counter()
    named: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    counted = excluded = 0
    for winner, is_counted, vote_flags, model_a_id, mode in votes:
        if mode == BattleMode.named:
            named["votes"] += 1
            named[_outcome(winner, model_a_id == model.id)] += 1
            continue
        for flag in vote_flags or []:
            flags[str(flag)] += 1
        if not is_counted:
            excluded += 1
            continue
        counted += 1
        outcomes[_outcome(winner, model_a_id == model.id)] += 1
    half_ties = 0.5 * (outcomes["tie"] + outcomes["both_bad"])
    return ModelStats(
        name=model.name,
        status=model.status,
        status_reason=model.status_reason,
        events=[
            StatusEventOut(status=e.status, reason=e.reason, actor=e.actor, at=e.created_at)
            for e in events
        ],
        consecutive_failures=await failure_streak(session, model.id, over=over),
        circuit_breaker_threshold=breaker_threshold,
        battles=battles,
        answers=answers,
        failed_answers=failed,
        error_rate=round(failed / answers, 4) if answers else None,
        recent_errors=recent_errors,
        first_token_ms=percentiles([t for t, _ in timings if t is not None]),
        answer_ms=percentiles([d for _, d in timings if d is not None]),
        votes=len(votes) - named["votes"],
        counted_votes=counted,
        wins=outcomes["win"],
        losses=outcomes["loss"],
        ties=outcomes["tie"],
        both_bad=outcomes["both_bad"],
        win_rate=round((outcomes["win"] + half_ties) / counted, 4) if counted else None,
        excluded_votes=excluded,
        flagged_votes=dict(sorted(flags.items())),
        sampling_share_7d=await _sampling_share(session, model.id, 7, now=now, over=over),
        sampling_share_all=await _sampling_share(session, model.id, None, now=now, over=over),
        rating=await _rating(session, model.name),
        named_votes=NamedVotesOut(
            votes=named["votes"],
            wins=named["win"],
            losses=named["loss"],
            ties=named["tie"],
            both_bad=named["both_bad"],
        ),
        chat_feedback=await chat_feedback(session, model.id),
        chat_answers=await chat_answers(session, model.id),
    )


def _outcome(winner: Winner, on_side_a: bool) -> str:
    """win, loss, tie or both_bad, for the model on side A (`on_side_a`) or B."""
    if winner == (Winner.model_a if on_side_a else Winner.model_b):
        return "win"
    if winner in (Winner.model_a, Winner.model_b):
        return "loss"
    return "tie" if winner == Winner.tie else "both_bad"


async def chat_feedback(session: AsyncSession, model_id: int) -> ChatFeedbackOut:
    """The model's direct chats and the thumbs up / down on their answers. A chat is not
    anonymous: its visitor chose the model, so nothing here waits for a battle to settle."""
    chats = await session.scalar(select(func.count(Chat.id)).where(Chat.model_id == model_id))
    thumbs = dict(
        (
            await session.execute(
                select(ChatFeedback.rating, func.count())
                .where(ChatFeedback.model_id == model_id)
                .group_by(ChatFeedback.rating)
            )
        ).all()
    )
    return ChatFeedbackOut(
        chats=chats or 0, up=thumbs.get(Feedback.up, 0), down=thumbs.get(Feedback.down, 0)
    )


async def chat_answers(session: AsyncSession, model_id: int) -> ChatAnswersOut:
    """The model's answers in direct chats: how many, how many failed, how many moderation
    withheld. Counts only: no prompt, no answer text, no visitor."""
    answers, failed, withheld = (
        await session.execute(
            select(
                func.count(ChatMessage.id),
                func.count(ChatMessage.error),
                func.count(case((ChatMessage.withheld, 1))),
            )
            .join(Chat, Chat.id == ChatMessage.chat_id)
            .where(chat_answers_of(model_id))
        )
    ).one()
    return ChatAnswersOut(
        answers=answers,
        failed_answers=failed,
        withheld_answers=withheld,
        error_rate=round(failed / answers, 4) if answers else None,
    )
