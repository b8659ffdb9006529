"""Fragility of ranks: hand-worked counts, invariants, and removals checked by refitting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arena.ratings import (
    Fragility,
    Removal,
    Swap,
    aggregate_battles,
    compute_leaderboard,
    fit_bradley_terry,
    rank_fragility,
)
from tests.ratings.simulate import simulate_battles


def _battles(*cells: tuple[str, str, str, int]) -> pd.DataFrame:
    rows = [(a, b, winner) for a, b, winner, n in cells for _ in range(n)]
    return pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])


def _fragility(battles: pd.DataFrame, *, reweighted: bool = False) -> Fragility:
    board = compute_leaderboard(battles, reweighted=reweighted)
    if board.fragility is None:
        raise AssertionError("a Bradley-Terry board has fragility figures")
    return board.fragility


def _order(battles: pd.DataFrame, *, reweighted: bool = False) -> list[str]:
    return [r.model for r in compute_leaderboard(battles, reweighted=reweighted).rows]


def _matching(battles: pd.DataFrame, removal: Removal) -> np.ndarray:
    a, b = battles["model_a"], battles["model_b"]
    one, other = removal.models
    pair = ((a == one) & (b == other)) | ((a == other) & (b == one))
    if removal.winner is None:
        won = battles["winner"].isin(["tie", "tie (bothbad)"])
    else:
        won = ((a == removal.winner) & (battles["winner"] == "model_a")) | (
            (b == removal.winner) & (battles["winner"] == "model_b")
        )
    return np.flatnonzero((pair & won).to_numpy())


def _without(battles: pd.DataFrame, removals: tuple[Removal, ...], fewer: int = 0) -> pd.DataFrame:
    """The battles less the named votes (less `fewer` of the last kind named)."""
    dropped: list[int] = []
    for n, removal in enumerate(removals):
        rows = _matching(battles, removal)
        count = removal.count - (fewer if n == len(removals) - 1 else 0)
        assert rows.size >= removal.count, removal
        dropped.extend(rows[:count].tolist())
    return battles.drop(index=battles.index[dropped]).reset_index(drop=True)


def _above(order: list[str], first: str, second: str) -> bool:
    return order.index(first) < order.index(second)


def test_two_models_hand_worked() -> None:
    # A beat B 7 times, B beat A 4 times: the gap is ln(7/4) and B goes above A once A's wins
    # fall below 4, so removing 4 of them; one Newton step predicts the same (each removal
    # closes (4/11) / (11 * 7/11 * 4/11) = 1/7 of a unit; ln(7/4) * 7 = 3.9).
    swap = _fragility(_battles(("A", "B", "model_a", 7), ("B", "A", "model_a", 4))).first_place
    assert swap == Swap(
        above="A",
        below="B",
        votes=4,
        first_order_votes=4,
        removals=(Removal(models=("A", "B"), winner="A", count=4),),
    )


def test_the_refit_corrects_a_first_order_estimate_that_falls_short() -> None:
    # 30 to 3: the gap is ln 10; B overtakes once A has fewer than 3 wins, that is after 28
    # removals. To first order each removal closes (3/33) / (33 * 30/33 * 3/33) = 1/30, and
    # even all 29 removable wins of A close only 29/30 of ln 10 = 2.3: no first-order count.
    fragility = _fragility(_battles(("A", "B", "model_a", 30), ("A", "B", "model_b", 3)))
    assert fragility.adjacent[0].votes == 28
    assert fragility.adjacent[0].first_order_votes is None
    assert fragility.adjacent[0].removals == (Removal(models=("A", "B"), winner="A", count=28),)


def test_a_removal_must_leave_every_model_rated() -> None:
    # 5 to 1: B goes above A only if A loses every win, and then A's rating is undefined
    # (it never won); 4 removals leave 1 to 1, a tie, which does not swap them.
    fragility = _fragility(_battles(("A", "B", "model_a", 5), ("A", "B", "model_b", 1)))
    assert fragility.adjacent[0].votes is None
    assert fragility.adjacent[0].removals == ()


def test_ties_are_removed_when_they_help() -> None:
    # A and B tie often and A won a little more: removing A's wins is the only help, each tie
    # kept; with C in the table, B's and A's results against C count as well.
    battles = _battles(
        ("A", "B", "model_a", 12),
        ("A", "B", "model_b", 9),
        ("A", "B", "tie", 6),
        ("A", "C", "model_a", 8),
        ("A", "C", "model_b", 5),
        ("B", "C", "model_a", 8),
        ("B", "C", "tie (bothbad)", 3),
        ("B", "C", "model_b", 5),
    )
    fragility = _fragility(battles)
    order = _order(battles)
    for swap in fragility.adjacent:
        assert swap.votes is not None
        after = _order(_without(battles, swap.removals))
        assert _above(after, swap.below, swap.above)
        assert _above(_order(_without(battles, swap.removals, fewer=1)), swap.above, swap.below)
    assert [s.above for s in fragility.adjacent] == order[:-1]


def test_relabelling_and_mirroring_change_nothing() -> None:
    rng = np.random.default_rng(11)
    battles = simulate_battles(np.array([0.0, 0.2, 0.35, 0.6]), 1500, rng, tie_share=0.2)
    before = _fragility(battles)
    mirrored = battles.rename(columns={"model_a": "model_b", "model_b": "model_a"})
    mirrored["winner"] = mirrored["winner"].replace({"model_a": "model_b", "model_b": "model_a"})
    assert _fragility(mirrored) == before
    # New names sort in the opposite order, so every pair's lo and hi sides change places.
    names = {f"model-{i:02d}": f"zz-{9 - i}" for i in range(4)}
    renamed = battles.assign(
        model_a=battles["model_a"].map(names), model_b=battles["model_b"].map(names)
    )
    after = _fragility(renamed)
    assert [s.votes for s in after.adjacent] == [s.votes for s in before.adjacent]
    assert [(names[s.above], names[s.below]) for s in before.adjacent] == [
        (s.above, s.below) for s in after.adjacent
    ]


def test_twice_the_votes_take_about_twice_the_removals() -> None:
    # Doubling every count leaves the fit where it is and halves each vote's influence.
    rng = np.random.default_rng(5)
    battles = simulate_battles(np.array([0.0, 0.3, 0.5, 0.9]), 2000, rng, tie_share=0.1)
    once = _fragility(battles)
    twice = _fragility(pd.concat([battles, battles], ignore_index=True))
    for one, two in zip(once.adjacent, twice.adjacent, strict=True):
        assert one.first_order_votes is not None and two.first_order_votes is not None
        assert 2 * one.first_order_votes - 2 <= two.first_order_votes <= 2 * one.first_order_votes
        assert one.votes is not None and two.votes is not None
        assert 2 * one.votes - 3 <= two.votes <= 2 * one.votes + 1


def test_fewer_than_two_models_and_elo_have_no_pairs() -> None:
    counts = aggregate_battles(_battles(("A", "B", "model_a", 3), ("A", "B", "model_b", 2)))
    fit = fit_bradley_terry(counts)
    assert rank_fragility(counts, fit, [0]) == Fragility(adjacent=(), first_place=None)
    board = compute_leaderboard(
        _battles(("A", "B", "model_a", 3), ("A", "B", "model_b", 2)), method="elo"
    )
    assert board.fragility is None
    assert all(r.swap_votes is None for r in board.rows)
    assert board.to_json_dict()["fragility"] is None


@pytest.mark.parametrize("reweighted", [False, True])
def test_removing_the_named_votes_swaps_and_random_removals_do_not(reweighted: bool) -> None:
    """The issue's validation: simulated battles; for every adjacent pair and for first place,
    removing the votes named and refitting swaps the two, removing one fewer along the same
    order does not, and random removals of as many votes almost never do."""
    rng = np.random.default_rng(2025)
    strengths = np.array([0.0, 0.15, 0.3, 0.5, 0.7, 1.0])
    battles = simulate_battles(strengths, 4000, rng, tie_share=0.15)
    board = compute_leaderboard(battles, reweighted=reweighted)
    fragility = board.fragility
    assert fragility is not None and fragility.first_place is not None
    order = [r.model for r in board.rows]
    assert [r.swap_votes for r in board.rows] == [s.votes for s in fragility.adjacent] + [None]
    swaps = [*fragility.adjacent, fragility.first_place]
    random_swaps = draws = 0
    for swap in swaps:
        assert swap.votes is not None and swap.votes > 0
        assert sum(r.count for r in swap.removals) == swap.votes
        assert _above(order, swap.above, swap.below)
        after = _order(_without(battles, swap.removals), reweighted=reweighted)
        assert _above(after, swap.below, swap.above), swap
        fewer = _order(_without(battles, swap.removals, fewer=1), reweighted=reweighted)
        assert _above(fewer, swap.above, swap.below), swap
        for _ in range(100):
            kept = np.sort(rng.choice(len(battles), len(battles) - swap.votes, replace=False))
            counts = aggregate_battles(battles.iloc[kept])
            fit = fit_bradley_terry(counts, reweighted=reweighted)
            ratings = fit.as_series()
            random_swaps += bool(ratings[swap.below] > ratings[swap.above])
            draws += 1
    assert fragility.first_place.above == order[0]
    assert fragility.first_place.votes is not None
    assert fragility.first_place.votes <= fragility.adjacent[0].votes  # type: ignore[operator]
    # Named removals swap every time; random ones of the same size about never (a removal of
    # N of the 4000 votes at random moves a gap by about sqrt(N / 4000) of its standard error).
    assert random_swaps <= 0.02 * draws, (random_swaps, draws)
