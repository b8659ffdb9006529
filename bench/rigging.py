"""Vote rigging (issue 5): how far an attacker moves a model's rank, with and without the defences.

    python bench/rigging.py                  # about fifteen seconds
    python bench/rigging.py --models 30 --honest-votes 100000 --seed 7

Simulated traffic, judged by the real checks:
- honest traffic: --honest-votes votes between uniform random pairs of --models models whose true
  ratings are known (normal, sd 100 points); each session has a taste of its own (a per-model
  offset, sd 40 points) and casts a few votes (mean 4), a few power users cast 50 to 300; one vote
  in six is a tie. Each vote arrives after the answers have streamed (two answers of 300 to 3,000
  characters at 200 characters/s) plus a reading time at the session's own speed (median 40
  characters/s; a careless 3 % of people click after 1 to 4 s);
- an attacker who recognises the target model (the one ranked --target-rank by its true rating)
  and, with --attacker-sessions sessions, votes for it in every battle it is in until it has cast V
  such votes; in the other battles it votes honestly or at random (the `other` column). A
  `careful` attacker waits as long as a reader would; a `bot` votes two seconds after the answers
  have finished.
Then, exactly as the arena does it:
1. the vote-time checks (`integrity.vote_flags`: the reading-time check with the default settings)
   flag votes cast too fast;
2. the ratings (`compute_leaderboard`, Bradley-Terry) are computed from the counted votes and the
   rigging scan (`rigging.session_suspicions`, default alpha and minimum votes) tests every
   session against them; every vote of a flagged session is excluded; the ratings are computed
   again and the scan repeated until it flags no one new (the background scan repeats the same way).

It prints, per scenario, the target's true rank, its rank and rating with every vote counted and
with the defences, the share of the attacker's votes excluded and the share of honest votes
wrongly excluded (too fast / flagged session). The baseline is the same honest traffic with no
attacker, in the same run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from arena.battles.integrity import BattleTiming, VoteChecks, vote_flags
from arena.battles.rigging import DecisiveVote, session_suspicions
from arena.config import Settings
from arena.ratings import compute_leaderboard

WINNERS = np.array(["model_a", "model_b", "tie"], dtype=object)
STREAM_CHARS_PER_SECOND = 200.0
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Votes:
    """One row per vote: who, which pair, the outcome code (0 a, 1 b, 2 tie), the timing."""

    session: np.ndarray
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    answer_chars: np.ndarray
    stream_seconds: np.ndarray
    vote_seconds: np.ndarray  # from the start of the stream to the vote
    attacker: np.ndarray

    @staticmethod
    def concat(parts: list[Votes]) -> Votes:
        return Votes(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Votes.__dataclass_fields__)
        )


def bt_outcomes(
    rng: np.random.Generator, strength_a: np.ndarray, strength_b: np.ndarray
) -> np.ndarray:
    """Bradley-Terry on the Elo scale, one tie in six."""
    p_a = 1.0 / (1.0 + 10.0 ** ((strength_b - strength_a) / 400.0))
    outcome = np.where(rng.random(len(p_a)) < p_a, 0, 1)
    return np.where(rng.random(len(p_a)) < 1 / 6, 2, outcome)


def draw_pairs(rng: np.random.Generator, n_models: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    a = rng.integers(0, n_models, n)
    b = (a + rng.integers(1, n_models, n)) % n_models
    return a, b


def answer_timing(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Characters of both answers and how long the longer one takes to stream."""
    chars = rng.integers(300, 3000, (n, 2))
    return chars.sum(axis=1), chars.max(axis=1) / STREAM_CHARS_PER_SECOND


def honest_traffic(
    rng: np.random.Generator, true_ratings: np.ndarray, n_votes: int
) -> tuple[Votes, int]:
    n_models = len(true_ratings)
    sizes: list[int] = []
    while sum(sizes) < n_votes:
        power_user = rng.random() < 0.01
        sizes.append(int(rng.integers(50, 300)) if power_user else int(rng.geometric(0.25)))
    sizes[-1] -= sum(sizes) - n_votes
    session = np.repeat(np.arange(len(sizes)), sizes)
    taste = rng.normal(0.0, 40.0, (len(sizes), n_models))
    speed = np.exp(rng.normal(np.log(40.0), 0.5, len(sizes)))  # characters read per second
    careless = rng.random(len(sizes)) < 0.03
    a, b = draw_pairs(rng, n_models, n_votes)
    outcome = bt_outcomes(
        rng, true_ratings[a] + taste[session, a], true_ratings[b] + taste[session, b]
    )
    chars, stream = answer_timing(rng, n_votes)
    decide = np.exp(rng.normal(np.log(3.0), 0.5, n_votes))
    read = np.maximum(stream, chars / speed[session]) + decide
    vote_seconds = np.where(careless[session], stream + rng.uniform(1.0, 4.0, n_votes), read)
    votes = Votes(
        session, a, b, outcome, chars, stream, vote_seconds, np.zeros(n_votes, dtype=bool)
    )
    return votes, len(sizes)


def attacker_traffic(
    rng: np.random.Generator,
    true_ratings: np.ndarray,
    target: int,
    target_votes: int,
    sessions: int,
    first_session: int,
    other: str,
    pace: str,
) -> Votes:
    """Battles as they come, until `target_votes` of them had the target in them."""
    n_models = len(true_ratings)
    a_parts, b_parts = [], []
    seen = 0
    while seen < target_votes:
        a, b = draw_pairs(rng, n_models, max(1000, target_votes * n_models))
        has_target = (a == target) | (b == target)
        cut = np.flatnonzero(np.cumsum(has_target) == target_votes - seen)
        stop = int(cut[0]) + 1 if len(cut) else len(a)
        a_parts.append(a[:stop])
        b_parts.append(b[:stop])
        seen += int(has_target[:stop].sum())
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    n = len(a)
    if other == "honest":
        outcome = bt_outcomes(rng, true_ratings[a], true_ratings[b])
    else:
        outcome = rng.integers(0, 3, n)
    outcome = np.where(a == target, 0, np.where(b == target, 1, outcome))
    session = first_session + rng.integers(0, sessions, n)
    chars, stream = answer_timing(rng, n)
    if pace == "bot":
        vote_seconds = stream + 2.0
    else:
        vote_seconds = np.maximum(stream, chars / 40.0) + 3.0
    return Votes(session, a, b, outcome, chars, stream, vote_seconds, np.ones(n, dtype=bool))


def too_fast(votes: Votes, checks: VoteChecks) -> np.ndarray:
    """The arena's own vote-time check, vote by vote."""
    flagged = np.zeros(len(votes.session), dtype=bool)
    for i in range(len(flagged)):
        started = EPOCH
        ready = started + timedelta(seconds=float(votes.stream_seconds[i]))
        timing = BattleTiming([], int(votes.answer_chars[i]), started, ready)
        now = started + timedelta(seconds=float(votes.vote_seconds[i]))
        flagged[i] = bool(vote_flags(timing, now=now, checks=checks))
    return flagged


def leaderboard(votes: Votes, keep: np.ndarray, names: np.ndarray) -> pd.Series:
    battles = pd.DataFrame(
        {
            "model_a": names[votes.a[keep]],
            "model_b": names[votes.b[keep]],
            "winner": WINNERS[votes.outcome[keep]],
        }
    )
    return compute_leaderboard(battles, method="bt").ratings()


def rigging_scan(
    votes: Votes, counted: np.ndarray, names: np.ndarray, settings: Settings
) -> np.ndarray:
    """Sessions flagged by the real scan, repeated against refreshed ratings until stable."""
    flagged_sessions: set[int] = set()
    decisive = votes.outcome != 2
    while True:
        keep = counted & ~np.isin(votes.session, list(flagged_sessions))
        ratings = {str(m): float(r) for m, r in leaderboard(votes, keep, names).items()}
        candidates = decisive & ~np.isin(votes.session, list(flagged_sessions))
        won_a = votes.outcome == 0
        winner = np.where(won_a, votes.a, votes.b)
        loser = np.where(won_a, votes.b, votes.a)
        # The scan reads every vote of a session, counted or not, as _decisive_votes does.
        found = session_suspicions(
            (
                DecisiveVote(str(s), str(names[w]), str(names[lo]))
                for s, w, lo in zip(
                    votes.session[candidates], winner[candidates], loser[candidates], strict=True
                )
            ),
            ratings,
            alpha=settings.rigging_alpha,
            min_votes=settings.rigging_min_votes,
        )
        if not found:
            return np.isin(votes.session, list(flagged_sessions))
        flagged_sessions.update(int(s.session_hash) for s in found)


def rank_of(ratings: pd.Series, name: str) -> int:
    return int(list(ratings.sort_values(ascending=False).index).index(name)) + 1


@dataclass(frozen=True)
class Scenario:
    target_votes: int
    sessions: int
    other: str
    pace: str


def run(args: argparse.Namespace) -> None:
    settings = Settings(_env_file=None)
    checks = VoteChecks.from_settings(settings)
    rng = np.random.default_rng(args.seed)
    true_ratings = 1000.0 + rng.normal(0.0, 100.0, args.models)
    names = np.array([f"model-{i:02d}" for i in range(args.models)], dtype=object)
    order = np.argsort(-true_ratings)
    target = int(order[args.target_rank - 1])
    honest, n_sessions = honest_traffic(rng, true_ratings, args.honest_votes)
    honest_fast = too_fast(honest, checks)
    print(
        f"{args.models} models, target {names[target]} (true rank {args.target_rank}, true rating "
        f"{true_ratings[target]:.0f}); {len(honest.session):,} honest votes from {n_sessions:,} "
        f"sessions; reading check {settings.reading_chars_per_second:g} chars/s, "
        f"{settings.min_vote_seconds:g}-{settings.max_reading_seconds:g} s; rigging scan alpha "
        f"{settings.rigging_alpha:g}, at least {settings.rigging_min_votes} votes on a model"
    )
    scenarios = [Scenario(0, 0, "-", "-")]
    for v in args.target_votes:
        scenarios.append(Scenario(v, args.attacker_sessions, "random", "careful"))
        scenarios.append(Scenario(v, args.attacker_sessions, "honest", "careful"))
        scenarios.append(Scenario(v, args.attacker_sessions, "random", "bot"))
        # Spread thin: fewer target votes per session than the scan's minimum.
        spread = max(1, v // max(1, settings.rigging_min_votes - 2))
        scenarios.append(Scenario(v, spread, "random", "careful"))
    header = (
        f"{'V':>6} {'sessions':>8} {'other':>6} {'pace':>7} | {'true':>4} | {'all votes':>13} | "
        f"{'defended':>13} | {'attack excl.':>12} | {'honest excl. (fast+flagged)':>27}"
    )
    print(header)
    print("-" * len(header))
    for scenario in scenarios:
        started = time.perf_counter()
        parts = [honest]
        fast_parts = [honest_fast]
        if scenario.target_votes:
            attack = attacker_traffic(
                rng,
                true_ratings,
                target,
                scenario.target_votes,
                scenario.sessions,
                n_sessions,
                scenario.other,
                scenario.pace,
            )
            parts.append(attack)
            fast_parts.append(too_fast(attack, checks))
        votes = Votes.concat(parts)
        fast = np.concatenate(fast_parts)
        everything = leaderboard(votes, np.ones(len(fast), dtype=bool), names)
        suspicious = rigging_scan(votes, ~fast, names, settings)
        defended = leaderboard(votes, ~fast & ~suspicious, names)
        target_name = str(names[target])
        attack_mask = votes.attacker
        excluded = fast | suspicious
        attack_share = (
            f"{excluded[attack_mask].mean():12.1%}" if attack_mask.any() else f"{'-':>12}"
        )
        honest_mask = ~attack_mask
        honest_fast_share = fast[honest_mask].mean()
        honest_flagged_share = (suspicious & ~fast)[honest_mask].mean()
        print(
            f"{scenario.target_votes:6d} {scenario.sessions:8d} {scenario.other:>6} "
            f"{scenario.pace:>7} | {args.target_rank:4d} | "
            f"#{rank_of(everything, target_name):<3d} {everything[target_name]:7.0f}  | "
            f"#{rank_of(defended, target_name):<3d} {defended[target_name]:7.0f}  | "
            f"{attack_share} | {honest_fast_share:13.1%} + {honest_flagged_share:6.2%}"
            f"   ({time.perf_counter() - started:.1f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--honest-votes", type=int, default=60_000)
    parser.add_argument("--target-rank", type=int, default=12)
    parser.add_argument("--target-votes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--attacker-sessions", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20260101)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
