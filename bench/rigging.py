"""Vote rigging (issues 5 and 20): how far an attacker moves a model's rank, under each defence.

    python bench/rigging.py                  # about a minute of CPU
    python bench/rigging.py --models 30 --honest-votes 100000 --seed 7

Simulated traffic, judged by the real checks:
- honest traffic: --honest-votes votes between uniform random pairs of --models models whose true
  ratings are known (normal, sd 100 points); each session has a taste of its own (a per-model
  offset, sd 40 points) and casts a few votes (mean 4), a few power users cast 50 to 300; one vote
  in six is a tie. Each vote arrives after the answers have streamed (two answers of 300 to 3,000
  characters at 200 characters/s) plus a reading time at the session's own speed (median 40
  characters/s; a careless 3 % of people click after 1 to 4 s). Most sessions have an address
  of their own; --campuses groups of --campus-sessions honest sessions share one (a university
  behind one NAT), and one session in ten shares its address with one other (a household);
- an attacker who recognises the target model (the one ranked --target-rank by its true rating)
  and, with S sessions, votes for it in every battle it is in until it has cast V such votes; in
  the other battles it votes honestly or at random (the `other` column). Its sessions have
  addresses of their own, or share A of them (`addr.`). It waits as long as a reader would (a
  bot that votes as soon as the answers end is caught by the reading check alone, issue 5).
Then each set of defences, exactly as the arena runs them:
- `none`: every vote counts;
- `today`: the vote-time reading check (`integrity.vote_flags`) flags votes cast too fast, the
  ratings (`compute_leaderboard`, Bradley-Terry) are computed from the counted votes and the
  rigging scan (`rigging.rigging_verdicts`, default settings) judges the sessions against them,
  with the pooled tests off; every vote of a flagged session is excluded, the ratings computed
  again and the scan repeated until it flags no one new (as the background scan does, between
  recomputes);
- `+address`, `+alike`: the same with one pooled test of `pooled_rigging` on (its default
  settings); `default`: both, as the arena now runs;
- `+weight`: today's defences, and each vote cast before its session's --history-votes-th vote
  weighs half in the ratings (a session with no history). The arena does not do this (see the
  README); the bench measures it by counting every other vote twice, which gives the weighted
  Bradley-Terry fit exactly. `all`: the default and the weight.

It prints, per scenario and defence set, the target's true rank, its rank and rating, the share
of the attacker's votes excluded and the share of honest votes excluded (too fast + flagged).
The baseline is the same honest traffic with no attacker, in the same run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from arena.battles.integrity import BattleTiming, VoteChecks, vote_flags
from arena.battles.rigging import DecisiveVote, rigging_verdicts
from arena.config import Settings
from arena.ratings import compute_leaderboard

WINNERS = np.array(["model_a", "model_b", "tie"], dtype=object)
STREAM_CHARS_PER_SECOND = 200.0
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Votes:
    """One row per vote: who, from where, which pair, the outcome code (0 a, 1 b, 2 tie), the
    timing, and how many votes its session had cast before."""

    session: np.ndarray
    address: np.ndarray
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    answer_chars: np.ndarray
    stream_seconds: np.ndarray
    vote_seconds: np.ndarray  # from the start of the stream to the vote
    attacker: np.ndarray
    earlier_votes: np.ndarray

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


def earlier_votes(session: np.ndarray) -> np.ndarray:
    """Each vote's rank in its session's votes (they arrive in array order)."""
    return pd.Series(session).groupby(session).cumcount().to_numpy()


def honest_addresses(
    rng: np.random.Generator, n_sessions: int, campuses: int, campus_sessions: int
) -> np.ndarray:
    address = np.arange(n_sessions)
    shuffled = rng.permutation(n_sessions)
    on_campus = shuffled[: campuses * campus_sessions]
    address[on_campus] = n_sessions + np.arange(len(on_campus)) % max(1, campuses)
    rest = shuffled[campuses * campus_sessions :]
    pairs = rest[: len(rest) // 10 * 2].reshape(-1, 2)
    address[pairs[:, 1]] = address[pairs[:, 0]]
    return address


def honest_traffic(
    rng: np.random.Generator, true_ratings: np.ndarray, n_votes: int, args: argparse.Namespace
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
    address = honest_addresses(rng, len(sizes), args.campuses, args.campus_sessions)
    votes = Votes(
        session,
        address[session],
        a,
        b,
        outcome,
        chars,
        stream,
        vote_seconds,
        np.zeros(n_votes, dtype=bool),
        earlier_votes(session),
    )
    return votes, len(sizes)


@dataclass(frozen=True)
class Scenario:
    target_votes: int
    sessions: int
    addresses: int  # 0: one per session
    other: str


def attacker_traffic(
    rng: np.random.Generator,
    true_ratings: np.ndarray,
    target: int,
    scenario: Scenario,
    first_session: int,
    first_address: int,
) -> Votes:
    """Battles as they come, until `target_votes` of them had the target in them."""
    n_models = len(true_ratings)
    a_parts, b_parts = [], []
    seen = 0
    while seen < scenario.target_votes:
        a, b = draw_pairs(rng, n_models, max(1000, scenario.target_votes * n_models))
        has_target = (a == target) | (b == target)
        cut = np.flatnonzero(np.cumsum(has_target) == scenario.target_votes - seen)
        stop = int(cut[0]) + 1 if len(cut) else len(a)
        a_parts.append(a[:stop])
        b_parts.append(b[:stop])
        seen += int(has_target[:stop].sum())
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    n = len(a)
    if scenario.other == "honest":
        outcome = bt_outcomes(rng, true_ratings[a], true_ratings[b])
    else:
        outcome = rng.integers(0, 3, n)
    outcome = np.where(a == target, 0, np.where(b == target, 1, outcome))
    own = rng.integers(0, scenario.sessions, n)
    if scenario.addresses:
        address_of = first_address + rng.integers(0, scenario.addresses, scenario.sessions)
    else:
        address_of = first_address + np.arange(scenario.sessions)
    chars, stream = answer_timing(rng, n)
    vote_seconds = np.maximum(stream, chars / 40.0) + 3.0
    return Votes(
        first_session + own,
        address_of[own],
        a,
        b,
        outcome,
        chars,
        stream,
        vote_seconds,
        np.ones(n, dtype=bool),
        earlier_votes(own),
    )


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


def leaderboard(
    votes: Votes, keep: np.ndarray, names: np.ndarray, doubled: np.ndarray | None
) -> pd.Series:
    """Bradley-Terry ratings of the kept votes; the `doubled` ones count twice (weight 2:1)."""
    rows = np.flatnonzero(keep)
    if doubled is not None:
        rows = np.concatenate([rows, np.flatnonzero(keep & doubled)])
    battles = pd.DataFrame(
        {
            "model_a": names[votes.a[rows]],
            "model_b": names[votes.b[rows]],
            "winner": WINNERS[votes.outcome[rows]],
        }
    )
    return compute_leaderboard(battles, method="bt").ratings()


def rigging_scan(
    votes: Votes,
    counted: np.ndarray,
    names: np.ndarray,
    settings: Settings,
    doubled: np.ndarray | None,
) -> np.ndarray:
    """Votes of the sessions flagged by the real scan, repeated against refreshed ratings until
    it flags no one new."""
    flagged = np.zeros(len(counted), dtype=bool)
    decisive = votes.outcome != 2
    won_a = votes.outcome == 0
    winner = names[np.where(won_a, votes.a, votes.b)]
    loser = names[np.where(won_a, votes.b, votes.a)]
    session_key = votes.session.astype(str)
    address_key = votes.address.astype(str)
    while True:
        ratings = {
            str(m): float(r)
            for m, r in leaderboard(votes, counted & ~flagged, names, doubled).items()
        }
        # The scan reads every decisive vote of a session not yet flagged, counted or not.
        candidates = np.flatnonzero(decisive & ~flagged)
        scanned = [
            DecisiveVote(session_key[i], winner[i], loser[i], address_key[i]) for i in candidates
        ]
        verdicts = rigging_verdicts(scanned, ratings, settings=settings)
        if not verdicts:
            return flagged
        flagged |= np.isin(session_key, [v.session_hash for v in verdicts])


def rank_of(ratings: pd.Series, name: str) -> int:
    return int(list(ratings.sort_values(ascending=False).index).index(name)) + 1


@dataclass(frozen=True)
class Defence:
    name: str
    reading: bool
    scan: Settings | None
    weight: bool


def defences(settings: Settings) -> list[Defence]:
    today = settings.model_copy(
        update={"rigging_pool_addresses": False, "rigging_alike_min_votes": 0}
    )
    address = today.model_copy(update={"rigging_pool_addresses": True})
    alike = today.model_copy(update={"rigging_alike_min_votes": settings.rigging_alike_min_votes})
    return [
        Defence("none", False, None, False),
        Defence("today", True, today, False),
        Defence("+address", True, address, False),
        Defence("+alike", True, alike, False),
        Defence("+weight", True, today, True),
        Defence("default", True, settings, False),
        Defence("all", True, settings, True),
    ]


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    spread = [
        Scenario(args.spread_votes, args.spread_sessions, addresses, other)
        for addresses in (0, args.spread_addresses)
        for other in ("random", "honest")
    ]
    return [
        Scenario(0, 0, 0, "-"),
        Scenario(300, 5, 0, "random"),
        *spread,
    ]


def run(args: argparse.Namespace) -> None:
    settings = Settings(_env_file=None)
    checks = VoteChecks.from_settings(settings)
    rng = np.random.default_rng(args.seed)
    true_ratings = 1000.0 + rng.normal(0.0, 100.0, args.models)
    names = np.array([f"model-{i:02d}" for i in range(args.models)], dtype=object)
    order = np.argsort(-true_ratings)
    target = int(order[args.target_rank - 1])
    target_name = str(names[target])
    honest, n_sessions = honest_traffic(rng, true_ratings, args.honest_votes, args)
    honest_fast = too_fast(honest, checks)
    print(
        f"{args.models} models, target {target_name} (true rank {args.target_rank}, true rating "
        f"{true_ratings[target]:.0f}); {len(honest.session):,} honest votes from {n_sessions:,} "
        f"sessions, {args.campuses} campuses of {args.campus_sessions} sessions on one address "
        f"each; reading check {settings.reading_chars_per_second:g} chars/s, "
        f"{settings.min_vote_seconds:g}-{settings.max_reading_seconds:g} s; rigging scan alpha "
        f"{settings.rigging_alpha:g}, at least {settings.rigging_min_votes} votes on a model; "
        f"alike test: at least {settings.rigging_alike_min_votes} votes on a model; weight 1/2 "
        f"before a session's vote {args.history_votes + 1}"
    )
    header = (
        f"{'V':>5} {'sess.':>5} {'addr.':>5} {'other':>6} | {'defence':>8} | "
        f"{'true':>4} | {'target':>11} | {'attack excl.':>12} | "
        f"{'honest excl. (fast+flagged)':>27}"
    )
    print(header)
    print("-" * len(header))
    for scenario in scenarios(args):
        parts, fast_parts = [honest], [honest_fast]
        if scenario.target_votes:
            attack = attacker_traffic(
                rng, true_ratings, target, scenario, n_sessions, 2 * n_sessions
            )
            parts.append(attack)
            fast_parts.append(too_fast(attack, checks))
        votes = Votes.concat(parts)
        fast = np.concatenate(fast_parts)
        new_session = votes.earlier_votes < args.history_votes
        honest_mask, attack_mask = ~votes.attacker, votes.attacker
        for defence in defences(settings):
            started = time.perf_counter()
            counted = ~fast if defence.reading else np.ones(len(fast), dtype=bool)
            doubled = ~new_session if defence.weight else None
            flagged = (
                rigging_scan(votes, counted, names, defence.scan, doubled)
                if defence.scan is not None
                else np.zeros(len(fast), dtype=bool)
            )
            ratings = leaderboard(votes, counted & ~flagged, names, doubled)
            excluded = ~counted | flagged
            attack_share = (
                f"{excluded[attack_mask].mean():12.1%}" if attack_mask.any() else f"{'-':>12}"
            )
            honest_fast_share = (~counted)[honest_mask].mean()
            honest_flagged = (flagged & counted)[honest_mask].mean()
            addresses = str(scenario.addresses) if scenario.addresses else "own"
            if not scenario.target_votes:
                addresses = "-"
            print(
                f"{scenario.target_votes:5d} {scenario.sessions:5d} {addresses:>5} "
                f"{scenario.other:>6} | {defence.name:>8} | "
                f"{args.target_rank:4d} | #{rank_of(ratings, target_name):<3d} "
                f"{ratings[target_name]:6.0f} | {attack_share} | "
                f"{honest_fast_share:13.1%} + {honest_flagged:6.2%}"
                f"   ({time.perf_counter() - started:.1f} s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--honest-votes", type=int, default=60_000)
    parser.add_argument("--target-rank", type=int, default=12)
    parser.add_argument("--spread-votes", type=int, default=1000)
    parser.add_argument("--spread-sessions", type=int, default=200)
    parser.add_argument("--spread-addresses", type=int, default=5)
    parser.add_argument("--campuses", type=int, default=4)
    parser.add_argument("--campus-sessions", type=int, default=250)
    parser.add_argument("--history-votes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20260101)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
