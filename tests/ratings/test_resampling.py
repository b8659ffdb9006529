"""The bootstrap's multinomial draws (arena/ratings/resampling.py) follow the multinomial law."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import chisquare

from arena.ratings.resampling import multinomial_rows


def exact_probabilities(n: int, shares: np.ndarray) -> dict[tuple[int, ...], float]:
    """Every outcome of multinomial(n, shares) with its probability."""
    outcomes = {}
    for counts in itertools.product(range(n + 1), repeat=shares.size):
        if sum(counts) == n:
            coefficient = math.factorial(n) / math.prod(math.factorial(c) for c in counts)
            outcomes[counts] = coefficient * float(np.prod(shares ** np.array(counts)))
    return outcomes


@pytest.mark.parametrize("sigmas_below", [0.0, 1.0, 3.0])
def test_small_draws_match_the_exact_distribution(sigmas_below: float) -> None:
    # sigmas_below=0: half the rows overshoot and are drawn again; 3: most draws are added one
    # by one. Every setting must give the same law.
    shares = np.array([0.5, 0.3, 0.15, 0.05])
    n, size = 6, 60_000
    drawn = multinomial_rows(np.random.default_rng(3), n, shares, size, sigmas_below=sigmas_below)
    expected = exact_probabilities(n, shares)
    seen: dict[tuple[int, ...], int] = {}
    for row in map(tuple, drawn.tolist()):
        seen[row] = seen.get(row, 0) + 1
    assert set(seen) <= set(expected)
    outcomes = sorted(expected)
    observed = np.array([seen.get(o, 0) for o in outcomes], dtype=float)
    wanted = np.array([expected[o] * size for o in outcomes])
    # Fixed seed, so the test is deterministic; a wrong law gives p-values of 1e-30 and below.
    assert chisquare(observed, wanted).pvalue > 1e-3


def test_large_draws_sum_to_n_with_the_multinomial_moments() -> None:
    rng = np.random.default_rng(8)
    shares = rng.random(300) ** 3
    shares /= shares.sum()
    n, size = 1_000_000, 400
    drawn = multinomial_rows(np.random.default_rng(1), n, shares, size)
    assert drawn.shape == (size, 300)
    assert (drawn.sum(axis=1) == n).all()
    assert (drawn >= 0).all()
    assert drawn.mean(axis=0) == pytest.approx(n * shares, rel=0.02, abs=1.0)
    # Var = n p (1 - p): the Poisson part alone would give n p; the sum constraint removes it.
    top = np.argsort(shares)[-5:]
    variance = drawn[:, top].var(axis=0, ddof=1)
    assert variance == pytest.approx(n * shares[top] * (1 - shares[top]), rel=0.25)
    # Cells covary negatively, -n p_i p_j: a group of cells holding half the shares varies as
    # n P (1 - P) = n / 4, half of what independent counts would give.
    group = np.argsort(shares)[::-1][: np.searchsorted(np.cumsum(np.sort(shares)[::-1]), 0.5)]
    share = shares[group].sum()
    assert drawn[:, group].sum(axis=1).var(ddof=1) == pytest.approx(
        n * share * (1 - share), rel=0.2
    )


def test_draws_depend_on_the_seed_only() -> None:
    shares = np.full(50, 1 / 50)
    one = multinomial_rows(np.random.default_rng(5), 1000, shares, 10)
    two = multinomial_rows(np.random.default_rng(5), 1000, shares, 10)
    other = multinomial_rows(np.random.default_rng(6), 1000, shares, 10)
    assert (one == two).all()
    assert (one != other).any()


def test_no_draws_and_a_negative_count() -> None:
    shares = np.array([0.25, 0.75])
    assert (multinomial_rows(np.random.default_rng(0), 0, shares, 3) == 0).all()
    with pytest.raises(ValueError, match="0 or more"):
        multinomial_rows(np.random.default_rng(0), -1, shares, 3)
