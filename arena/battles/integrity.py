"""Which votes count: identity leaks, repeated prompts, blind clicks, throttled sessions, and why.

Every vote is stored. A vote with one or more flags has `counted = False` and keeps its flags, so
the ratings leave it out and the operator can still see it (DESIGN section 5). Flags known before
the vote (an answer that names its own model, a prompt seen too often) are kept on the battle and
copied to its vote; the others are decided when the vote arrives, or later by the rigging scan.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Final, Protocol

from sqlalchemy import ColumnElement, Text, bindparam, cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.integrity_schemas import (
    ExcludedVoteOut,
    FlaggedSessionOut,
    FlagsOut,
    VoteCountsOut,
)
from arena.battles.lookalikes import fold_lookalikes
from arena.config import Settings
from arena.models import Battle, FlaggedSession, Model, PromptCount, Side, Vote, utcnow

IDENTITY_LEAK: Final = "identity_leak"
DUPLICATE_PROMPT: Final = "duplicate_prompt"
RATE_LIMITED: Final = "rate_limited"
TOO_FAST: Final = "too_fast"
SUSPICIOUS_SESSION: Final = "suspicious_session"
POOLED_ADDRESS: Final = "pooled_address"
POOLED_ALIKE: Final = "pooled_alike"
NAMED: Final = "named"

REASONS: Final[dict[str, str]] = {
    IDENTITY_LEAK: "an answer named its own model or organisation, so the vote was not blind",
    DUPLICATE_PROMPT: "the prompt had been used more often than the duplicate-prompt limit",
    RATE_LIMITED: "the session had been refused for going over a rate limit shortly before",
    TOO_FAST: "cast faster than a person can read the two answers",
    SUSPICIOUS_SESSION: "the session's votes are improbable under the current ratings",
    POOLED_ADDRESS: (
        "the session is one of far more sessions from one address than the current ratings "
        "expect whose votes on one model all went the same way"
    ),
    POOLED_ALIKE: (
        "the session is one of far more sessions than the current ratings expect whose "
        "several votes on one model all went the same way"
    ),
    NAMED: "the visitor chose the models by name, so the vote was not blind (side-by-side mode)",
}

# Shorter terms (an organisation called "X") would match ordinary text everywhere.
MIN_TERM_CHARS: Final = 3
_SEPARATORS = re.compile(r"[\s\-_./:]+")


# ---------------------------------------------------------------- identity leaks


def identity_terms(name: str, organization: str, aliases: Mapping[str, Sequence[str]]) -> list[str]:
    """The words by which a model gives itself away: its name, its organisation, their aliases.

    A term counts by what a person reads (fold_lookalikes): "Meta" and "ＭＥＴＡ" are one term, and
    an organisation padded with invisible characters to three is still too short."""
    terms = [name, organization, *aliases.get(name, ()), *aliases.get(organization, ())]
    seen: dict[str, str] = {}
    for term in terms:
        key = fold_lookalikes(term).strip()
        if len(key) >= MIN_TERM_CHARS:
            seen.setdefault(key, term.strip())
    return list(seen.values())


def _term_parts(term: str) -> list[str]:
    return [part for part in _SEPARATORS.split(fold_lookalikes(term)) if part]


def identity_pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    """Whole words of folded text (see fold_lookalikes); separators inside a term match any
    separator or none, so the model "gpt-4o" is found in "GPT 4o" and "gpt4o" but not in
    "gpt-4omega"."""
    alternatives = []
    for term in terms:
        parts = [re.escape(part) for part in _term_parts(term)]
        if parts:
            # Possessive: a part never starts with a separator, so giving some back cannot help,
            # and a long run of separators is then crossed once, not once per length.
            alternatives.append(r"[\s\-_./:]*+".join(parts))
    if not alternatives:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")


def names_itself(answer: str, terms: Iterable[str]) -> bool:
    """Whether `answer` names a term as a person reads it: invisible characters, compatibility
    forms, look-alike letters from other scripts and case make no difference."""
    terms = list(terms)
    folded = fold_lookalikes(answer)
    # Most answers hold no term at all: looking for each term's first word as a substring
    # settles them fast, where the pattern tries every position of the answer in turn.
    if not any(parts and parts[0] in folded for parts in map(_term_parts, terms)):
        return False
    pattern = identity_pattern(terms)
    return pattern is not None and pattern.search(folded) is not None


def answers_name_themselves(
    answers: Mapping[Side, str],
    models: Mapping[Side, tuple[str, str]],
    aliases: Mapping[str, Sequence[str]],
) -> bool:
    """Whether an answer names its own model or organisation (`models`: side -> name and
    organisation of the model behind it)."""
    for side, (name, organization) in models.items():
        if names_itself(answers.get(side, ""), identity_terms(name, organization, aliases)):
            return True
    return False


_BATTLE_FLAGS = select(Battle.flags).where(Battle.id == bindparam("flagged_id"))
_SET_BATTLE_FLAGS = (
    update(Battle)
    .where(Battle.id == bindparam("flagged_id"))
    .values(flags=bindparam("flags", type_=Battle.__table__.c.flags.type))
)


def flag_battle(connection: Connection, *, battle_id: str, flag: str) -> None:
    """Add `flag` to the battle's flags (kept once), in the caller's write transaction."""
    flags = list(connection.execute(_BATTLE_FLAGS, {"flagged_id": battle_id}).scalar_one())
    if flag not in flags:
        connection.execute(_SET_BATTLE_FLAGS, {"flagged_id": battle_id, "flags": [*flags, flag]})


# ---------------------------------------------------------------- duplicate prompts


def normalise_prompt(prompt: str) -> str:
    """Same prompt, same key: compatibility forms folded, case folded, runs of spaces joined."""
    return " ".join(unicodedata.normalize("NFKC", prompt).casefold().split())


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(normalise_prompt(prompt).encode("utf-8", "surrogatepass")).hexdigest()


def _count_prompt(insert: Any) -> Any:
    return (
        insert(PromptCount)
        .values(
            prompt_hash=bindparam("counted_hash"),
            count=1,
            first_seen_at=bindparam("counted_at", type_=PromptCount.__table__.c.first_seen_at.type),
        )
        .on_conflict_do_update(
            index_elements=[PromptCount.prompt_hash], set_={"count": PromptCount.count + 1}
        )
        .returning(PromptCount.count)
    )


# Built once per dialect: every battle runs it, and building it cost more than running it.
_COUNT_PROMPT = {
    "postgresql": _count_prompt(postgresql_insert),
    "sqlite": _count_prompt(sqlite_insert),
}


def prompt_flags(connection: Connection, *, prompt: str, settings: Settings) -> list[str]:
    """Count the prompt (one upsert) and say whether its battle is over the duplicate limit."""
    seen = connection.execute(
        _COUNT_PROMPT[connection.dialect.name],
        {"counted_hash": prompt_hash(prompt), "counted_at": utcnow()},
    ).scalar_one()
    return [DUPLICATE_PROMPT] if int(seen) > settings.duplicate_prompt_limit else []


# ---------------------------------------------------------------- at the vote


@dataclass(frozen=True)
class VoteChecks:
    """What the vote path needs beyond the battle: reading speeds and the rate-limit history."""

    reading_chars_per_second: float
    min_vote_seconds: float
    max_reading_seconds: float
    throttled: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, *, throttled: bool = False) -> VoteChecks:
        return cls(
            reading_chars_per_second=settings.reading_chars_per_second,
            min_vote_seconds=settings.min_vote_seconds,
            max_reading_seconds=settings.max_reading_seconds,
            throttled=throttled,
        )


def reading_seconds(answer_chars: int, checks: VoteChecks) -> float:
    """The least time a person needs to take in two answers of `answer_chars` characters."""
    skim = min(checks.max_reading_seconds, answer_chars / checks.reading_chars_per_second)
    return max(checks.min_vote_seconds, skim)


class VotedBattle(Protocol):
    """What the vote-time checks read of a battle (a Battle row, or BattleTiming)."""

    @property
    def flags(self) -> list[Any]: ...
    @property
    def answer_chars(self) -> int: ...
    @property
    def stream_started_at(self) -> datetime | None: ...
    @property
    def ready_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class BattleTiming:
    flags: list[Any]
    answer_chars: int
    stream_started_at: datetime | None
    ready_at: datetime | None


def vote_flags(battle: VotedBattle, *, now: datetime, checks: VoteChecks | None) -> list[str]:
    flags = [str(flag) for flag in battle.flags]
    if checks is not None:
        # The answers are read while they stream, so the clock starts with the stream.
        shown_at = battle.stream_started_at or battle.ready_at
        if shown_at is not None:
            elapsed = (now - shown_at).total_seconds()
            if elapsed < reading_seconds(battle.answer_chars, checks):
                flags.append(TOO_FAST)
        if checks.throttled:
            flags.append(RATE_LIMITED)
    return sorted(set(flags))


def named_vote_flags(flags: list[str]) -> list[str]:
    """The flags of a vote in a named battle: never counted in the ratings (`named`), and an
    answer naming its model reveals nothing its visitor did not choose."""
    return sorted({*(flag for flag in flags if flag != IDENTITY_LEAK), NAMED})


# ---------------------------------------------------------------- what the leaderboard shows


@dataclass(frozen=True)
class VoteCounts:
    """Votes counted and excluded; a vote excluded for two reasons is under both in `by_reason`."""

    total: int
    counted: int
    excluded: int
    by_reason: dict[str, int] = field(default_factory=dict)


# Built once per flag: the recompute scheduler asks every few seconds, and each new cast()
# leaves a reference cycle for the cycle collector.
@cache
def held_back_only_for(flag: str) -> ColumnElement[bool]:
    """The condition on `Vote` selecting the votes held back for `flag` and nothing else."""
    # The flags are a JSON list written by this module, so its text is exactly json.dumps's.
    return cast(Vote.flags, Text) == json.dumps([flag])


@cache
def counted_or_duplicate() -> ColumnElement[bool]:
    """The condition on `Vote` selecting the votes a leaderboard table may rate: the counted
    ones, and those held back for nothing but a prompt past the duplicate limit (the views
    that turn deduplication off rate them too)."""
    return or_(Vote.counted.is_(True), held_back_only_for(DUPLICATE_PROMPT))


def _flag_list(stored: object) -> list[str]:
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return ["unknown"]
    return [str(flag) for flag in stored] if isinstance(stored, list) else ["unknown"]


async def vote_counts(session: AsyncSession) -> VoteCounts:
    """How many votes count and how many do not, by reason (for the leaderboard page)."""
    counted = int(
        await session.scalar(select(func.count()).select_from(Vote).where(Vote.counted.is_(True)))
        or 0
    )
    # Few distinct flag lists exist, so grouping by their text keeps this one small query.
    groups = (
        await session.execute(
            select(cast(Vote.flags, Text), func.count())
            .where(Vote.counted.is_(False))
            .group_by(cast(Vote.flags, Text))
        )
    ).all()
    by_reason: Counter[str] = Counter()
    excluded = 0
    for flags_text, n in groups:
        excluded += int(n)
        for flag in set(_flag_list(flags_text)) or {"unknown"}:
            by_reason[flag] += int(n)
    return VoteCounts(
        total=counted + excluded,
        counted=counted,
        excluded=excluded,
        by_reason=dict(sorted(by_reason.items())),
    )


# ---------------------------------------------------------------- what the operator reviews


def counts_out(counts: VoteCounts) -> VoteCountsOut:
    """The counts with what each reason means, for the people reading the numbers."""
    return VoteCountsOut(**asdict(counts), reasons=REASONS)


async def flag_report(
    session: AsyncSession, *, limit: int = 100, before_id: int | None = None
) -> FlagsOut:
    """Flagged sessions and excluded votes, newest first; page on with `before_id`."""
    flagged_rows = (
        await session.execute(
            select(
                FlaggedSession.session_hash,
                FlaggedSession.reason,
                FlaggedSession.detail,
                func.min(FlaggedSession.created_at),
                FlaggedSession.decision,
                FlaggedSession.decided_at,
                FlaggedSession.decision_note,
            )
            .group_by(
                FlaggedSession.session_hash,
                FlaggedSession.reason,
                FlaggedSession.detail,
                FlaggedSession.decision,
                FlaggedSession.decided_at,
                FlaggedSession.decision_note,
            )
            .order_by(func.min(FlaggedSession.created_at).desc())
            .limit(limit)
        )
    ).all()
    votes_by_session = {
        session_hash: int(n)
        for session_hash, n in await session.execute(
            select(Vote.session_hash, func.count())
            .where(Vote.session_hash.in_([row[0] for row in flagged_rows]))
            .group_by(Vote.session_hash)
        )
    }
    sessions: dict[tuple[str, str], FlaggedSessionOut] = {}
    for session_hash, reason, detail, created_at, decision, decided_at, note in flagged_rows:
        # Two workers may record the same verdict at once; show it once.
        sessions.setdefault(
            (session_hash, reason),
            FlaggedSessionOut(
                session_hash=session_hash,
                reason=reason,
                detail=detail,
                created_at=created_at,
                votes=int(votes_by_session.get(session_hash, 0)),
                decision=decision,
                decided_at=decided_at,
                decision_note=note,
            ),
        )
    query = (
        select(Vote, Battle.model_a_id, Battle.model_b_id)
        .join(Battle, Battle.id == Vote.battle_id)
        .where(Vote.counted.is_(False))
        .order_by(Vote.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(Vote.id < before_id)
    names = dict((await session.execute(select(Model.id, Model.name))).all())
    votes = [
        ExcludedVoteOut(
            vote_id=vote.id,
            battle_id=vote.battle_id,
            created_at=vote.created_at,
            winner=vote.winner.value,
            flags=_flag_list(vote.flags),
            session_hash=vote.session_hash,
            seconds_to_vote=vote.seconds_to_vote,
            model_a=names.get(a_id, ""),
            model_b=names.get(b_id, ""),
        )
        for vote, a_id, b_id in await session.execute(query)
    ]
    return FlagsOut(
        counts=counts_out(await vote_counts(session)),
        sessions=list(sessions.values()),
        votes=votes,
        next_before_id=votes[-1].vote_id if len(votes) == limit else None,
    )
