"""Pooled rigging tests: many thin sessions that each vote the same way on one model, together.

An attacker who spreads its votes over many sessions keeps each below the per-session test's
minimum (rigging.py), but its sessions still share what honest sessions rarely do: every decisive
vote of theirs on the target went the same way. Under the ratings R a session whose n decisive
battles on model m had m win with probabilities p_1..p_n votes unanimously for m with
probability q = p_1 * ... * p_n (against m: the product of the 1 - p_k). Summed over a pool of
sessions, E = sum q is the number of unanimous sessions to expect, and the number found, O, is
tested against a Poisson law of mean c * E, which is conservative for a sum of unlikely
Bernoulli trials (its variance is the larger). c >= 1 calibrates the test on the data: honest
people have tastes, so unanimous sessions are somewhat more common than the ratings say, on
every model alike; c is the median O / E over the (model, direction) cells of all sessions
(those expecting at least one unanimous session), so one attacked cell does not move it.

Two pools:
- by address: the sessions whose votes mostly came from one address hash (a NAT, a campus, or
  an attacker's few machines), each with at least one decisive vote on m. A group is tested on
  every model and both directions (Bonferroni over groups, models and directions);
- alike: every session with at least `alike_min_votes` decisive votes on m, wherever it comes
  from; one (model, direction) cell per scan, the most improbable, since its exclusion changes
  the ratings the other cells are judged by.
Only the unanimous sessions of a flagged pool are excluded, never the whole address: the honest
people behind a flagged address who voted both ways on m, or not at all, keep their votes (those
whose votes on m happened to go the attacker's way go with it: about E of them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import numpy as np
import pandas as pd
from scipy.special import pdtrc

from arena.battles.integrity import POOLED_ADDRESS, POOLED_ALIKE

Direction = Literal["for", "against"]
# Fewer expected unanimous sessions than this in a cell make its O / E too noisy to calibrate on.
_MIN_EXPECTED_FOR_CALIBRATION: Final = 1.0


class PooledVote(Protocol):
    """A decisive vote as the pooled tests read it (rigging.DecisiveVote is one)."""

    @property
    def session_hash(self) -> str: ...
    @property
    def address_hash(self) -> str: ...
    @property
    def winner(self) -> str: ...
    @property
    def loser(self) -> str: ...


@dataclass(frozen=True)
class PooledSuspicion:
    reason: str
    model: str
    direction: Direction
    sessions: tuple[str, ...]  # the unanimous sessions, the ones to exclude
    pool_sessions: int  # sessions in the pool with enough decisive votes on the model
    expected: float  # unanimous sessions the ratings expect, before calibration
    calibration: float
    p_value: float  # one-sided, before the Bonferroni factor
    tests: int

    def detail(self) -> str:
        where = "from one address" if self.reason == POOLED_ADDRESS else "anywhere"
        return (
            f"one of {len(self.sessions)} sessions {where} whose decisive votes on {self.model} "
            f"all went {self.direction} it, among {self.pool_sessions} that voted on it, where "
            f"the ratings expect {self.expected:.1f} (x{self.calibration:.2f} for tastes); "
            f"p = {self.p_value:.2g} over {self.tests} test(s)"
        )


def _session_model_table(votes: Iterable[PooledVote], ratings: Mapping[str, float]) -> pd.DataFrame:
    """One row per (session, model): decisive votes, whether all for or all against the model,
    the log-probabilities of either under the ratings, and the session's main address."""
    sessions: list[str] = []
    addresses: list[str] = []
    winners: list[str] = []
    losers: list[str] = []
    for vote in votes:
        if vote.winner in ratings and vote.loser in ratings:
            sessions.append(vote.session_hash)
            addresses.append(vote.address_hash)
            winners.append(vote.winner)
            losers.append(vote.loser)
    if not sessions:
        return pd.DataFrame()
    rated = pd.Series(ratings, dtype=float)
    gap = rated[winners].to_numpy() - rated[losers].to_numpy()
    p_winner = 1.0 / (1.0 + 10.0 ** (-gap / 400.0))
    both_sides = pd.DataFrame(
        {
            "session": sessions * 2,
            "model": winners + losers,
            "won": np.r_[np.ones(len(sessions)), np.zeros(len(sessions))],
            # log P(the model wins this battle), log P(it loses)
            "log_p": np.log(np.r_[p_winner, 1.0 - p_winner]),
            "log_not_p": np.log(np.r_[1.0 - p_winner, p_winner]),
        }
    )
    table = both_sides.groupby(["session", "model"], sort=False).agg(
        n=("won", "size"),
        wins=("won", "sum"),
        log_q_for=("log_p", "sum"),
        log_q_against=("log_not_p", "sum"),
    )
    table = table.reset_index()
    by_address = pd.DataFrame({"session": sessions, "address": addresses})
    counts = by_address.groupby(["session", "address"], sort=False).size().reset_index(name="k")
    main = counts.sort_values("k", ascending=False, kind="stable").drop_duplicates("session")
    return table.merge(main[["session", "address"]], on="session", how="left")


def _cells(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per pool and (model, direction): sessions, unanimous sessions O, expected E."""
    parts = []
    for direction, unanimous, log_q in (
        ("for", rows["wins"] == rows["n"], rows["log_q_for"]),
        ("against", rows["wins"] == 0, rows["log_q_against"]),
    ):
        part = rows[keys].copy()
        part["direction"] = direction
        part["unanimous"] = unanimous.to_numpy()
        part["q"] = np.exp(log_q.to_numpy())
        parts.append(part)
    both = pd.concat(parts, ignore_index=True)
    return (
        both.groupby([*keys, "direction"], sort=False)
        .agg(sessions=("q", "size"), observed=("unanimous", "sum"), expected=("q", "sum"))
        .reset_index()
    )


def calibration(rows: pd.DataFrame) -> float:
    """Median O / E over the (model, direction) cells of all sessions; never below 1."""
    cells = _cells(rows, ["model"])
    usable = cells[cells["expected"] >= _MIN_EXPECTED_FOR_CALIBRATION]
    if usable.empty:
        return 1.0
    return max(1.0, float((usable["observed"] / usable["expected"]).median()))


def _p_values(cells: pd.DataFrame, factor: float) -> np.ndarray:
    return poisson_at_least(
        cells["observed"].to_numpy(dtype=float), factor * cells["expected"].to_numpy(dtype=float)
    )


def poisson_at_least(observed: np.ndarray, means: np.ndarray) -> np.ndarray:
    """P(X >= observed) for X Poisson with `means` (scipy.stats' poisson.sf(observed - 1),
    without importing scipy.stats, which takes most of a second)."""
    below = observed - 1.0
    return np.where(below < 0, 1.0, pdtrc(np.maximum(below, 0.0), means))


def _unanimous(rows: pd.DataFrame, model: str, direction: str) -> tuple[str, ...]:
    on_model = rows[rows["model"] == model]
    mask = on_model["wins"] == (on_model["n"] if direction == "for" else 0)
    return tuple(sorted(on_model.loc[mask, "session"]))


def _suspicion(
    reason: str, rows: pd.DataFrame, cell: pd.Series, factor: float, tests: int
) -> PooledSuspicion:
    direction: Direction = "for" if cell["direction"] == "for" else "against"
    return PooledSuspicion(
        reason=reason,
        model=str(cell["model"]),
        direction=direction,
        sessions=_unanimous(rows, str(cell["model"]), direction),
        pool_sessions=int(cell["sessions"]),
        expected=float(cell["expected"]),
        calibration=factor,
        p_value=float(cell["p"]),
        tests=tests,
    )


def address_suspicions(
    rows: pd.DataFrame, *, alpha: float, min_sessions: int = 2
) -> list[PooledSuspicion]:
    """Address groups with far more unanimous sessions on one model than the ratings expect;
    for each, its most improbable (model, direction)."""
    if rows.empty:
        return []
    factor = calibration(rows)
    members = rows[rows["address"] != ""]
    sizes = members.groupby("address")["session"].nunique()
    members = members[members["address"].isin(sizes[sizes >= min_sessions].index)]
    if members.empty:
        return []
    cells = _cells(members, ["address", "model"])
    cells["p"] = _p_values(cells, factor)
    tests = 2 * rows["model"].nunique() * int(members["address"].nunique())
    found = []
    significant = cells[cells["p"] * tests < alpha].sort_values("p", kind="stable")
    for address, cell in significant.groupby("address", sort=False):
        worst = cell.iloc[0]
        group = members[members["address"] == address]
        found.append(_suspicion(POOLED_ADDRESS, group, worst, factor, tests))
    return found


def alike_suspicion(rows: pd.DataFrame, *, alpha: float, min_votes: int) -> PooledSuspicion | None:
    """The most improbable (model, direction) over all sessions with at least `min_votes`
    decisive votes on the model, if it passes alpha (Bonferroni over models and directions)."""
    if rows.empty:
        return None
    thick = rows[rows["n"] >= min_votes]
    if thick.empty:
        return None
    factor = calibration(thick)
    cells = _cells(thick, ["model"])
    cells["p"] = _p_values(cells, factor)
    tests = 2 * rows["model"].nunique()
    worst = cells.sort_values("p", kind="stable").iloc[0]
    if float(worst["p"]) * tests >= alpha or math.isnan(float(worst["p"])):
        return None
    return _suspicion(POOLED_ALIKE, thick, worst, factor, tests)


def pooled_suspicions(
    votes: Iterable[PooledVote],
    ratings: Mapping[str, float],
    *,
    alpha: float,
    pool_addresses: bool,
    alike_min_votes: int,
) -> list[PooledSuspicion]:
    """Both pooled tests (`alike_min_votes` 0 leaves the second out); votes between models
    without a rating are left out."""
    if not pool_addresses and alike_min_votes <= 0:
        return []
    rows = _session_model_table(votes, ratings)
    found = address_suspicions(rows, alpha=alpha) if pool_addresses else []
    if alike_min_votes > 0:
        alike = alike_suspicion(rows, alpha=alpha, min_votes=alike_min_votes)
        if alike is not None:
            found.append(alike)
    return found
