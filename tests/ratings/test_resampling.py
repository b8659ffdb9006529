"""The bootstrap's draws (arena/ratings/resampling.py) follow the multinomial and Poisson laws."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import chisquare, poisson

from arena.ratings.resampling import multinomial_rows, poisson_rows


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


@pytest.mark.parametrize("mean", [1e-9, 0.3, 1.0, 3.7, 66.0, 1234.5, 2.5e6])
def test_poisson_counts_invert_the_exact_distribution_function(mean: float) -> None:
    # Each count is the smallest x with P(X <= x) >= u for its uniform u: scipy's quantile
    # function of the same uniforms, drawn in the same order from the same seed.
    rounds = 4000
    counts = poisson_rows(np.random.default_rng(11), np.array([mean, 0.0]), rounds)
    uniforms = np.random.default_rng(11).random((2, rounds))
    assert counts.shape == (rounds, 2)
    assert (counts[:, 1] == 0).all()
    assert (counts[:, 0] == poisson.ppf(uniforms[0], mean).astype(np.int64)).all()


def test_poisson_counts_have_the_poisson_law_in_every_column() -> None:
    means = np.array([0.05, 2.0, 9.5, 40.0, 700.0])
    counts = poisson_rows(np.random.default_rng(2), means, 50_000)
    for column, mean in zip(counts.T, means, strict=True):
        values, seen = np.unique(column, return_counts=True)
        wanted = poisson.pmf(values, mean) * column.size
        enough = wanted > 20
        observed = np.append(seen[enough], seen[~enough].sum())
        expected = np.append(wanted[enough], column.size - wanted[enough].sum())
        assert chisquare(observed, expected).pvalue > 1e-3


def test_poisson_means_must_be_finite_and_not_negative() -> None:
    for means in ([1.0, -0.5], [np.nan], [np.inf]):
        with pytest.raises(ValueError, match="finite and 0 or more"):
            poisson_rows(np.random.default_rng(0), np.array(means), 3)
    assert poisson_rows(np.random.default_rng(0), np.array([]), 3).shape == (3, 0)
