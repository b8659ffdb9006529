"""Leaderboard fixtures: an arena whose background job stays quiet, and votes seeded in bulk."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import insert, select

from arena.battles.integrity import DUPLICATE_PROMPT, SUSPICIOUS_SESSION
from arena.db import make_sync_engine
from arena.leaderboard.snapshots import RecomputeConfig, RecomputeOutcome, run_recompute
from arena.models import Battle, BattleStatus, Message, Model, Side, Vote
from tests.conftest import Arena

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ENGLISH = "Explain briefly why the sky looks blue on a clear afternoon."
GERMAN = "Warum ist der Himmel am Nachmittag blau? Bitte erkläre es mir ganz einfach und kurz."
CODE = "Fix this function please:\n```python\ndef add(a, b):\n    return a - b\n```"
LONG = "Summarise the following notes for a busy reader. " + "The meeting covered budgets. " * 90


@dataclass(frozen=True)
class SeedVote:
    """One battle with its messages and its vote, as the battle flow would have stored them."""

    model_a: str
    model_b: str
    winner: str
    prompt: str = ENGLISH
    answer_a: str = "Because of Rayleigh scattering."
    answer_b: str = "Sunlight scatters off air molecules."
    turns: int = 1
    counted: bool = True
    session: str = "visitor-1"
    at: datetime | None = None
    # Whether its visitor was shown the release notice (texts are released only then)
    notice_shown: bool = True
    erased: bool = False
    battle_flags: tuple[str, ...] = ()
    # Why a vote that is not counted was held back (its flags)
    held_back_for: tuple[str, ...] = (SUSPICIOUS_SESSION,)


def seed_votes(database_url: str, votes: Sequence[SeedVote], *, start: datetime = START) -> None:
    """Insert battles, messages and votes in bulk (one transaction); votes one second apart."""
    engine = make_sync_engine(database_url)
    try:
        with engine.begin() as conn:
            ids = {str(n): int(i) for n, i in conn.execute(select(Model.name, Model.id))}
            battles: list[dict[str, Any]] = []
            messages: list[dict[str, Any]] = []
            rows: list[dict[str, Any]] = []
            for n, vote in enumerate(votes):
                at = vote.at or start + timedelta(seconds=n)
                battle_id = secrets.token_urlsafe(16)
                battles.append(
                    {
                        "id": battle_id,
                        "model_a_id": ids[vote.model_a],
                        "model_b_id": ids[vote.model_b],
                        "session_hash": f"session-hash-{vote.session}",
                        "ip_hash": f"ip-hash-{vote.session}",
                        "status": BattleStatus.voted,
                        "turns": vote.turns,
                        "language": "",
                        "category_tags": [],
                        "created_at": at - timedelta(seconds=30),
                        "ready_at": at - timedelta(seconds=5),
                        "notice_shown_at": at - timedelta(seconds=40)
                        if vote.notice_shown
                        else None,
                        "erased_at": at + timedelta(seconds=60) if vote.erased else None,
                        "flags": list(vote.battle_flags),
                    }
                )
                for turn in range(1, vote.turns + 1):
                    prompt = vote.prompt if turn == 1 else f"And a follow-up, number {turn}?"
                    for side, content in (
                        (Side.user, prompt),
                        (Side.a, f"{vote.answer_a} (turn {turn})"),
                        (Side.b, f"{vote.answer_b} (turn {turn})"),
                    ):
                        if vote.erased:
                            content = ""
                        messages.append(
                            {
                                "battle_id": battle_id,
                                "turn": turn,
                                "side": side,
                                "content": content,
                                "finish_reason": None if side == Side.user else "stop",
                                "created_at": at - timedelta(seconds=20),
                            }
                        )
                rows.append(
                    {
                        "battle_id": battle_id,
                        "winner": vote.winner,
                        "session_hash": f"session-hash-{vote.session}",
                        "ip_hash": f"ip-hash-{vote.session}",
                        "created_at": at,
                        "counted": vote.counted,
                        "flags": [] if vote.counted else list(vote.held_back_for),
                    }
                )
            conn.execute(insert(Battle), battles)
            conn.execute(insert(Message), messages)
            conn.execute(insert(Vote), rows)
    finally:
        engine.dispose()


def simulated_votes(
    strengths: dict[str, float],
    n: int,
    *,
    seed: int = 7,
    tie_share: float = 0.1,
    prompts: Sequence[str] = (ENGLISH,),
    multi_turn_share: float = 0.0,
) -> list[SeedVote]:
    """Votes between random pairs; side a wins with probability sigmoid(s_a - s_b)."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    made = []
    for i in range(n):
        a, b = rng.choice(len(names), size=2, replace=False)
        p_a = 1.0 / (1.0 + np.exp(strengths[names[b]] - strengths[names[a]]))
        draw = rng.random()
        winner = (
            "tie"
            if draw < tie_share / 2
            else "tie (bothbad)"
            if draw < tie_share
            else ("model_a" if rng.random() < p_a else "model_b")
        )
        made.append(
            SeedVote(
                model_a=names[a],
                model_b=names[b],
                winner=winner,
                prompt=prompts[i % len(prompts)],
                turns=2 if rng.random() < multi_turn_share else 1,
                session=f"visitor-{i % 17}",
            )
        )
    return made


MODELS: dict[str, dict[str, str]] = {
    "alpha-large": {"organization": "Alpha Labs", "license": "Apache-2.0"},
    "beta-chat": {"organization": "Beta Inc", "license": "MIT"},
    "gamma-7b": {"organization": "Gamma Collective", "license": "Llama 3"},
    "delta-mini": {"organization": "Delta AI", "license": "Proprietary"},
}
STRENGTHS = {"alpha-large": 1.2, "beta-chat": 0.6, "gamma-7b": 0.0, "delta-mini": -0.4}


def add_models(arena: Arena, base_url: str = "http://127.0.0.1:9/v1") -> None:
    for name, facts in MODELS.items():
        arena.add_model(name, base_url, **facts)


def standard_votes() -> list[SeedVote]:
    """About 400 votes over four models: English, German, code and long prompts, some two-turn
    battles, a few uncounted votes, and a newcomer that lost its only two battles."""
    votes = simulated_votes(
        STRENGTHS, 400, prompts=(ENGLISH, ENGLISH, GERMAN, CODE, LONG), multi_turn_share=0.2
    )
    votes += [
        SeedVote("newcomer", "alpha-large", "model_b"),
        SeedVote("beta-chat", "newcomer", "model_a"),
        SeedVote("alpha-large", "gamma-7b", "model_b", counted=False),
        SeedVote("alpha-large", "delta-mini", "model_b", counted=False),
    ]
    return votes


def latest_board(
    client: httpx.Client, *, newer_than: int | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    """/api/leaderboard once it shows a snapshot newer than `newer_than` (pages look for a new
    snapshot about once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get("/api/leaderboard").json()
        snapshot = body["snapshot"]
        fresh = snapshot is not None and (newer_than is None or snapshot["id"] > newer_than)
        if fresh or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def recompute(arena: Arena, **overrides: Any) -> RecomputeOutcome:
    config = RecomputeConfig.from_settings(arena.settings)
    if overrides:
        config = RecomputeConfig(**{**config.__dict__, **overrides})
    return run_recompute(config)


def seed_held_back_duplicates(arena: Arena) -> list[SeedVote]:
    """300 counted votes and 40 held back for the duplicate limit alone, all won by the weakest
    model, and one held back for another reason too, which no table may rate; recomputed.
    Returns the counted votes."""
    add_models(arena)
    counted = simulated_votes(STRENGTHS, 300, tie_share=0.2, prompts=(ENGLISH, ENGLISH, CODE))
    duplicates = [
        SeedVote(
            "delta-mini", "alpha-large", "model_a", counted=False, held_back_for=(DUPLICATE_PROMPT,)
        )
        for _ in range(40)
    ]
    also_suspicious = SeedVote(
        "delta-mini",
        "beta-chat",
        "model_a",
        counted=False,
        held_back_for=(DUPLICATE_PROMPT, SUSPICIOUS_SESSION),
    )
    seed_votes(arena.settings.database_url, [*counted, *duplicates, also_suspicious])
    outcome = recompute(arena)
    assert outcome.failed == () and outcome.n_votes == 300
    return counted


@pytest.fixture
def quiet_arena(arena_factory: Callable[..., Arena]) -> Arena:
    """An arena whose background job never fires during the test (recomputes are explicit)."""
    return arena_factory(
        recompute_every_votes=10**9, recompute_every_seconds=3600.0, bootstrap_rounds=20
    )


@pytest.fixture
def rated_arena(quiet_arena: Arena) -> Arena:
    """The standard votes, recomputed once."""
    add_models(quiet_arena)
    quiet_arena.add_model("newcomer", "http://127.0.0.1:9/v1", organization="New Co")
    seed_votes(quiet_arena.settings.database_url, standard_votes())
    outcome = recompute(quiet_arena)
    assert outcome.ran and outcome.stored > 0
    return quiet_arena
