"""The rigging test: exact tail probabilities, honest voters pass, a one-model fan is caught."""

from __future__ import annotations

import math
import random

import pytest

from arena.battles.rigging import (
    EXACT_UP_TO,
    DecisiveVote,
    session_suspicions,
    two_sided_p_value,
    win_probability,
)

RATINGS = {"top": 1200.0, "mid": 1000.0, "low": 850.0, "bottom": 800.0}


def test_win_probability_is_the_elo_curve() -> None:
    assert win_probability(1000, 1000) == 0.5
    assert win_probability(1400, 1000) == pytest.approx(10 / 11)
    assert win_probability(1000, 1400) + win_probability(1400, 1000) == pytest.approx(1.0)


def test_p_value_by_hand() -> None:
    # Ten fair coins all heads: 1/1024 one way, twice that either way.
    assert two_sided_p_value([0.5] * 10, 10) == pytest.approx(2 / 1024)
    assert two_sided_p_value([0.5] * 10, 0) == pytest.approx(2 / 1024)
    assert two_sided_p_value([0.5] * 10, 5) == 1.0
    # Unequal probabilities: P(both win) = 0.9 * 0.2 = 0.18, P(at most two) = 1.
    assert two_sided_p_value([0.9, 0.2], 2) == pytest.approx(0.36)


def test_normal_approximation_beyond_the_exact_range_is_close() -> None:
    ps = [0.3 + 0.4 * (i % 7) / 6 for i in range(EXACT_UP_TO + 1)]
    mean = sum(ps)
    wins = round(mean + 3 * math.sqrt(sum(p * (1 - p) for p in ps)))
    approx = two_sided_p_value(ps, wins)
    exact = two_sided_p_value(ps[:EXACT_UP_TO], wins - round(ps[-1]))
    assert approx == pytest.approx(exact, rel=0.3)
    assert 0.001 < approx < 0.01


def _honest_session(name: str, rng: random.Random, n: int) -> list[DecisiveVote]:
    votes = []
    models = list(RATINGS)
    for _ in range(n):
        a, b = rng.sample(models, 2)
        a_wins = rng.random() < win_probability(RATINGS[a], RATINGS[b])
        votes.append(DecisiveVote(name, a if a_wins else b, b if a_wins else a))
    return votes


def test_honest_sessions_are_not_flagged() -> None:
    rng = random.Random(2024)
    votes = [v for i in range(300) for v in _honest_session(f"honest-{i}", rng, 40)]
    assert session_suspicions(votes, RATINGS, alpha=1e-4, min_votes=8) == []


def test_a_fan_of_a_weak_model_is_caught_with_the_evidence() -> None:
    rng = random.Random(9)
    votes = _honest_session("fan", rng, 20)
    # The fan recognises "bottom" and always picks it: 10 battles, all won.
    for opponent in ["top", "mid", "low"] * 3 + ["mid"]:
        votes.append(DecisiveVote("fan", "bottom", opponent))
    votes += _honest_session("someone-else", rng, 30)
    found = session_suspicions(votes, RATINGS, alpha=1e-4, min_votes=8)
    assert [(s.session_hash, s.model) for s in found] == [("fan", "bottom")]
    fan = found[0]
    assert fan.wins >= 10 and fan.expected_wins < fan.votes / 2
    assert fan.p_value * fan.tested_models < 1e-4
    assert "bottom won" in fan.detail()


def test_too_few_votes_or_unrated_models_are_not_tested() -> None:
    few = [DecisiveVote("s", "bottom", "top")] * 7
    assert session_suspicions(few, RATINGS, alpha=1e-4, min_votes=8) == []
    unrated = [DecisiveVote("s", "newcomer", "top")] * 50
    assert session_suspicions(unrated, RATINGS, alpha=1e-4, min_votes=8) == []
