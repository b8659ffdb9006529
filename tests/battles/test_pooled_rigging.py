"""The pooled rigging tests: thin sessions judged together, by address and by voting alike."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from arena.battles.integrity import POOLED_ADDRESS, POOLED_ALIKE
from arena.battles.pooled_rigging import poisson_at_least, pooled_suspicions
from arena.battles.rigging import DecisiveVote, rigging_verdicts, win_probability
from arena.config import Settings

RATINGS = {"top": 1200.0, "mid": 1000.0, "low": 900.0, "bottom": 800.0}


def _honest(name: str, address: str, rng: random.Random, n: int) -> list[DecisiveVote]:
    """Votes of a person with tastes of their own (up to 60 points per model)."""
    taste = {m: rng.gauss(0.0, 40.0) for m in RATINGS}
    votes = []
    for _ in range(n):
        a, b = rng.sample(list(RATINGS), 2)
        p_a = win_probability(RATINGS[a] + taste[a], RATINGS[b] + taste[b])
        won, lost = (a, b) if rng.random() < p_a else (b, a)
        votes.append(DecisiveVote(name, won, lost, address))
    return votes


def _fan(name: str, address: str, rng: random.Random, on_bottom: int) -> list[DecisiveVote]:
    """A session that picks "bottom" whenever it is shown, `on_bottom` times, and votes as an
    honest person in the battles without it."""
    votes: list[DecisiveVote] = []
    while sum(v.winner == "bottom" for v in votes) < on_bottom:
        vote = _honest(name, address, rng, 1)[0]
        if vote.loser == "bottom":
            vote = DecisiveVote(name, "bottom", vote.winner, address)
        votes.append(vote)
    return votes


def _crowd(rng: random.Random) -> list[DecisiveVote]:
    """3,000 honest sessions on addresses of their own, and a campus of 300 behind one NAT."""
    votes = []
    for i in range(3000):
        votes += _honest(f"h{i}", f"home-{i}", rng, rng.choice([1, 2, 3, 4, 6, 10, 30]))
    for i in range(300):
        votes += _honest(f"c{i}", "campus", rng, rng.choice([1, 2, 4, 8]))
    return votes


def test_a_worked_case_by_hand() -> None:
    # Ten sessions on one address, each with one vote between two equal models, all for "x":
    # E = 10 * 0.5 = 5 unanimous sessions expected, 10 found; P(Poisson(5) >= 10) by hand.
    votes = [DecisiveVote(f"s{i}", "x", "y", "one-address") for i in range(10)]
    expected_p = 1 - sum(math.exp(-5) * 5**k / math.factorial(k) for k in range(10))
    found = pooled_suspicions(
        votes, {"x": 1000.0, "y": 1000.0}, alpha=1.0, pool_addresses=True, alike_min_votes=0
    )
    assert len(found) == 1
    suspicion = found[0]
    assert suspicion.reason == POOLED_ADDRESS
    assert suspicion.sessions == tuple(sorted(f"s{i}" for i in range(10)))
    assert suspicion.expected == pytest.approx(5.0)
    assert suspicion.p_value == pytest.approx(expected_p)
    assert suspicion.tests == 4  # one address, two models, two directions
    # Either cell tells the same story: x always won, y always lost.
    assert (suspicion.model, suspicion.direction) in {("x", "for"), ("y", "against")}


def test_honest_crowds_and_a_campus_are_not_flagged() -> None:
    votes = _crowd(random.Random(20))
    assert rigging_verdicts(votes, RATINGS, settings=Settings(_env_file=None)) == []


def test_spread_fans_on_their_own_addresses_are_found_by_voting_alike() -> None:
    rng = random.Random(7)
    votes = _crowd(rng)
    fans = {f"fan{i}" for i in range(60)}
    for name in sorted(fans):
        votes += _fan(name, f"proxy-{name}", rng, 4)
    settings = Settings(_env_file=None)
    verdicts = [
        v for v in rigging_verdicts(votes, RATINGS, settings=settings) if v.reason == POOLED_ALIKE
    ]
    flagged = {v.session_hash for v in verdicts}
    assert fans <= flagged
    # The honest people caught with them are the few whose 3+ votes on "bottom" all won, about
    # as many as the ratings expect (five or so).
    honest_flagged = flagged - fans
    assert len(honest_flagged) <= 15
    for name in honest_flagged:
        on_bottom = [v for v in votes if v.session_hash == name and "bottom" in (v.winner, v.loser)]
        assert len(on_bottom) >= 3 and all(v.winner == "bottom" for v in on_bottom)
    assert "all went for it" in verdicts[0].detail and "bottom" in verdicts[0].detail
    # Below the per-session test's minimum, these fans were invisible before.
    today = settings.model_copy(
        update={"rigging_pool_addresses": False, "rigging_alike_min_votes": 0}
    )
    assert not fans & {v.session_hash for v in rigging_verdicts(votes, RATINGS, settings=today)}


def test_fans_behind_a_few_addresses_are_found_and_their_neighbours_kept() -> None:
    rng = random.Random(11)
    votes = _crowd(rng)
    fans = {f"fan{i}" for i in range(60)}
    for i, name in enumerate(sorted(fans)):
        # One or two votes each: too thin for the alike test, plain from the address.
        votes += _fan(name, f"attacker-{i % 2}", rng, 1 + (i // 2) % 2)
    # Honest people behind the attacker's first address: they must keep their votes.
    for i in range(20):
        votes += _honest(f"neighbour{i}", "attacker-0", rng, 3)
    verdicts = rigging_verdicts(
        votes,
        RATINGS,
        settings=Settings(_env_file=None, rigging_alike_min_votes=0),
    )
    flagged = {v.session_hash for v in verdicts if v.reason == POOLED_ADDRESS}
    assert fans <= flagged
    for name in flagged - fans:
        # A neighbour goes only if every one of its votes on "bottom" picked it, as the fans did.
        on_bottom = [v for v in votes if v.session_hash == name and "bottom" in (v.winner, v.loser)]
        assert name.startswith("neighbour") and on_bottom
        assert all(v.winner == "bottom" for v in on_bottom)
    assert len(flagged - fans) < 10


def test_pooled_tests_switched_off_or_unrated_find_nothing() -> None:
    votes = [DecisiveVote(f"s{i}", "bottom", "top", "one") for i in range(50)]
    assert (
        pooled_suspicions(votes, RATINGS, alpha=1e-4, pool_addresses=False, alike_min_votes=0) == []
    )
    unrated = [DecisiveVote(f"s{i}", "newcomer", "top", "one") for i in range(50)]
    assert (
        pooled_suspicions(unrated, RATINGS, alpha=1e-4, pool_addresses=True, alike_min_votes=3)
        == []
    )


def test_the_poisson_tail_is_scipys() -> None:
    from scipy.stats import poisson

    observed = np.arange(0, 400, dtype=float)
    for mean in (0.0, 1e-9, 0.5, 3.0, 80.0, 1000.0):
        means = np.full(observed.size, mean)
        assert np.allclose(
            poisson_at_least(observed, means), poisson.sf(observed - 1, means), rtol=1e-12, atol=0
        ), mean
