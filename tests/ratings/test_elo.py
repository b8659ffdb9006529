"""Online Elo against a hand-worked example, time order, and its bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arena.ratings import compute_leaderboard, online_elo
from arena.ratings.battles import encode_battles
from arena.ratings.elo import bootstrap_online_elo

# Worked by hand with K = 4, scale 400, base 10, everyone at 1000:
# 1. A beats B: E = 0.5 each, A = 1000 + 4 * 0.5 = 1002, B = 1000 - 4 * 0.5 = 998.
# 2. B (side a) and C tie, bothbad: E_B = 1 / (1 + 10 ** (2 / 400)) = 0.49712180,
#    B = 998 + 4 * (0.5 - 0.49712180) = 998.01151280, C = 1000 + 4 * (0.5 - 0.50287820)
#    = 999.98848720.
# 3. C (side a) against A, model_b (A) wins: E_C = 1 / (1 + 10 ** ((1002 - 999.98848720) / 400))
#    = 0.49710523, C = 999.98848720 - 4 * 0.49710523 = 998.00006627,
#    A = 1002 + 4 * (1 - 0.50289477) = 1003.98842093.
HAND_WORKED = pd.DataFrame(
    {
        "model_a": ["A", "B", "C"],
        "model_b": ["B", "C", "A"],
        "winner": ["model_a", "tie (bothbad)", "model_b"],
        "tstamp": [1.0, 2.0, 3.0],
    }
)


def test_online_elo_matches_the_hand_worked_example() -> None:
    ratings = online_elo(HAND_WORKED)
    assert ratings["A"] == pytest.approx(1003.98842093, abs=1e-8)
    assert ratings["B"] == pytest.approx(998.01151280, abs=1e-8)
    assert ratings["C"] == pytest.approx(998.00006627, abs=1e-8)


def test_online_elo_is_bit_for_bit_the_step_by_step_formula() -> None:
    ra = rb = rc = 1000.0
    ea, eb = 1 / (1 + 10 ** ((rb - ra) / 400)), 1 / (1 + 10 ** ((ra - rb) / 400))
    ra, rb = ra + 4 * (1 - ea), rb + 4 * (1 - 1 - eb)
    eb, ec = 1 / (1 + 10 ** ((rc - rb) / 400)), 1 / (1 + 10 ** ((rb - rc) / 400))
    rb, rc = rb + 4 * (0.5 - eb), rc + 4 * (1 - 0.5 - ec)
    ec, ea = 1 / (1 + 10 ** ((ra - rc) / 400)), 1 / (1 + 10 ** ((rc - ra) / 400))
    rc, ra = rc + 4 * (0 - ec), ra + 4 * (1 - 0 - ea)
    ratings = online_elo(HAND_WORKED)
    assert (ratings["A"], ratings["B"], ratings["C"]) == (ra, rb, rc)


def test_online_elo_follows_tstamp_not_row_order() -> None:
    shuffled = HAND_WORKED.iloc[[2, 0, 1]]
    assert online_elo(shuffled).to_dict() == online_elo(HAND_WORKED).to_dict()
    without_time = shuffled.drop(columns="tstamp")
    assert online_elo(without_time).to_dict() != online_elo(HAND_WORKED).to_dict()


def test_both_tie_kinds_score_a_half() -> None:
    plain = HAND_WORKED.assign(winner=["model_a", "tie", "model_b"])
    assert online_elo(plain).to_dict() == online_elo(HAND_WORKED).to_dict()


def test_elo_parameters_are_used() -> None:
    one = pd.DataFrame({"model_a": ["A"], "model_b": ["B"], "winner": ["model_a"]})
    ratings = online_elo(one, k=32, init=1500)
    assert ratings["A"] == 1516.0
    assert ratings["B"] == 1484.0


def test_leaderboard_elo_without_bootstrap_has_no_intervals() -> None:
    board = compute_leaderboard(HAND_WORKED, method="elo").to_json_dict()
    assert [m["model"] for m in board["models"]] == ["A", "B", "C"]
    assert board["models"][0]["rating"] == pytest.approx(1003.98842093, abs=1e-8)
    assert all(m["ci_lower"] is None and m["ci_upper"] is None for m in board["models"])
    assert [m["rank"] for m in board["models"]] == [1, 2, 3]
    assert board["params"]["interval"] is None


def test_bootstrap_rounds_are_online_elo_on_resampled_rows() -> None:
    battles = pd.DataFrame(
        {
            "model_a": ["A", "B", "C", "A", "B"],
            "model_b": ["B", "C", "A", "C", "A"],
            "winner": ["model_a", "tie", "model_b", "model_a", "model_b"],
        }
    )
    encoded = encode_battles(battles)
    samples = bootstrap_online_elo(encoded, rounds=3, rng=np.random.default_rng(7))
    # The same draws, replayed one round at a time through the plain online Elo.
    picks = np.random.default_rng(7).integers(0, 5, size=(3, 5))
    for r in range(3):
        expected = online_elo(battles.iloc[picks[r]].reset_index(drop=True))
        assert samples[r] == pytest.approx(expected.to_numpy(), abs=1e-9)


def test_bootstrap_spans_draw_blocks_and_matches_plain_elo_per_round() -> None:
    """More battles than one block of draws: the draws stay (rounds, block) per call, in order."""
    rng = np.random.default_rng(11)
    n = 5000
    names = np.array(["A", "B", "C", "D", "E"], dtype=object)
    a = rng.integers(0, 5, n)
    b = (a + rng.integers(1, 5, n)) % 5
    winners = np.array(["model_a", "model_b", "tie", "tie (bothbad)"], dtype=object)
    battles = pd.DataFrame(
        {"model_a": names[a], "model_b": names[b], "winner": winners[rng.integers(0, 4, n)]}
    )
    encoded = encode_battles(battles)
    samples = bootstrap_online_elo(encoded, rounds=4, rng=np.random.default_rng(3))
    draws = np.random.default_rng(3)
    first = draws.integers(0, n, size=(4, 4096))
    second = draws.integers(0, n, size=(4, n - 4096))
    picks = np.concatenate([first, second], axis=1)
    for r in range(4):
        expected = online_elo(battles.iloc[picks[r]].reset_index(drop=True))
        assert samples[r] == pytest.approx(expected.to_numpy(), abs=1e-9)


def test_bootstrap_is_the_same_whatever_the_threads() -> None:
    battles = pd.DataFrame(
        {
            "model_a": ["A", "B", "C", "A", "B", "D"],
            "model_b": ["B", "C", "A", "C", "D", "A"],
            "winner": ["model_a", "tie", "model_b", "model_a", "model_b", "tie (bothbad)"],
        }
    )
    encoded = encode_battles(battles)
    one = bootstrap_online_elo(encoded, rounds=7, rng=np.random.default_rng(5), threads=1)
    three = bootstrap_online_elo(encoded, rounds=7, rng=np.random.default_rng(5), threads=3)
    assert np.array_equal(one, three)


def _python_online_elo(battles: pd.DataFrame) -> dict[str, float]:
    """FastChat's compute_elo loop, written out in plain Python floats."""
    rating: dict[str, float] = {}
    for a, b, winner in battles[["model_a", "model_b", "winner"]].itertuples(index=False):
        ra = rating.setdefault(a, 1000.0)
        rb = rating.setdefault(b, 1000.0)
        ea = 1 / (1 + 10 ** ((rb - ra) / 400))
        eb = 1 / (1 + 10 ** ((ra - rb) / 400))
        sa = 1.0 if winner == "model_a" else 0.0 if winner == "model_b" else 0.5
        rating[a] = ra + 4 * (sa - ea)
        rating[b] = rb + 4 * (1 - sa - eb)
    return rating


def test_online_elo_is_bit_for_bit_the_python_loop() -> None:
    rng = np.random.default_rng(21)
    n = 20_000
    names = np.array([f"m{i}" for i in range(12)], dtype=object)
    a = rng.integers(0, 12, n)
    b = (a + rng.integers(1, 12, n)) % 12
    winners = np.array(["model_a", "model_b", "tie", "tie (bothbad)"], dtype=object)
    battles = pd.DataFrame(
        {"model_a": names[a], "model_b": names[b], "winner": winners[rng.integers(0, 4, n)]}
    )
    ours = online_elo(battles)
    expected = _python_online_elo(battles)
    assert {name: float(r) for name, r in ours.items()} == expected
