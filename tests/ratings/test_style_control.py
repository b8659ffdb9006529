"""Style control: recovery of simulated strengths and length bias, exactness against the optimum,
FastChat's and arena-rank's fits, the sandwich formula, the bootstrap, and the leaderboard."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from arena.ratings import (
    InvalidBattles,
    aggregate_battles,
    compute_leaderboard,
    encode_battles,
    fit_bradley_terry,
    fit_style_control,
    style_arrays,
    style_sandwich_covariance,
)
from arena.ratings.intervals import HESSIAN_RIDGE, z_value
from arena.ratings.style_control import (
    DEFAULT_REG,
    STYLE_ELEMENTS,
    bootstrap_style_control,
    normalised_differences,
    resample_counts,
)
from bench.fastchat_style_control import compute_style_control
from tests.ratings.simulate import simulate_style_battles

POINTS = 400 / math.log(10)
SCORE_A = np.array([1.0, 0.0, 0.5, 0.5])


def standardised(style_a: np.ndarray, style_b: np.ndarray) -> np.ndarray:
    ratio = (style_a - style_b) / (style_a + style_b + 1.0)
    sd = ratio.std(axis=0)
    return (ratio - ratio.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def small_arena(seed: int, n: int = 6000, tie_share: float = 0.15) -> tuple:
    rng = np.random.default_rng(seed)
    strengths = rng.normal(0.0, 0.5, 5)
    verbosity = np.array([900.0, 300.0, 600.0, 400.0, 1200.0])
    battles, style_a, style_b = simulate_style_battles(
        strengths, verbosity, 0.4, n, rng, tie_share=tie_share
    )
    encoded = encode_battles(battles)
    return battles, encoded, style_a, style_b


def optimum_by_scipy(
    encoded, style_a, style_b, convention: str, reg: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """The objective written out from DESIGN section 7 and minimised by L-BFGS to gtol 1e-12."""
    a, b = encoded.a, encoded.b
    y = SCORE_A[encoded.outcome]
    f = standardised(style_a.astype(float), style_b.astype(float))
    m, k, n = len(encoded.models), f.shape[1], a.shape[0]
    c = np.ones(n) if weights is None else weights

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        s, theta = x[:m], x[m:]
        eta = s[a] - s[b] + f @ theta
        residual = c * (y - expit(eta))
        loss = float(np.sum(c * (np.logaddexp(0.0, eta) - y * eta)))
        grad = np.zeros(m + k)
        np.add.at(grad, a, -residual)
        np.add.at(grad, b, residual)
        grad[m:] = -f.T @ residual
        if convention == "fastchat":
            beta = s / math.log(10)
            loss += reg / 2 * (beta @ beta + theta @ theta)
            grad[:m] += reg * beta / math.log(10)
            grad[m:] += reg * theta
            return loss, grad
        grad[m:] += n * reg * theta
        return (loss + n * reg / 2 * theta @ theta) / n, grad / n

    result = minimize(
        objective,
        np.zeros(m + k),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 20000, "gtol": 1e-12, "ftol": 1e-16},
    )
    x = np.asarray(result.x)
    x[:m] -= x[:m].mean()
    return x


def test_recovers_strengths_and_length_bias_where_plain_bradley_terry_is_biased() -> None:
    rng = np.random.default_rng(7)
    strengths = np.array([0.6, 0.3, 0.0, -0.2, -0.7])
    # The weakest model talks the most: plain Bradley-Terry credits it with the length effect.
    verbosity = np.array([300.0, 500.0, 400.0, 350.0, 1500.0])
    length_effect = 0.5
    battles, style_a, style_b = simulate_style_battles(
        strengths, verbosity, length_effect, 80_000, rng
    )
    encoded = encode_battles(battles)
    fit = fit_style_control(
        encoded.a, encoded.b, encoded.outcome, style_a, style_b, models=encoded.models
    )
    sd = np.sqrt(np.diag(style_sandwich_covariance(fit, ridge=HESSIAN_RIDGE)))
    m = len(encoded.models)
    truth = strengths - strengths.mean()
    assert np.all(np.abs(fit.strengths - truth) < 4 * sd[:m])
    assert abs(fit.coefficients[0] - length_effect) < 4 * sd[m]
    # Headers, lists and bold do nothing in this arena.
    assert np.all(np.abs(fit.coefficients[1:]) < 4 * sd[m + 1 :])

    plain = fit_bradley_terry(aggregate_battles(battles))
    bias = plain.strengths - truth
    assert bias[4] * POINTS > 20  # the verbose model, by more than 20 rating points
    assert abs(bias[4]) > 8 * sd[4]
    assert abs(fit.strengths[4] - truth[4]) < abs(bias[4]) / 4


@pytest.mark.parametrize(
    ("convention", "reweighted"),
    [("fastchat", False), ("arena-rank", False), ("arena-rank", True), ("fastchat", True)],
)
def test_fit_is_the_optimum_of_its_objective(convention: str, reweighted: bool) -> None:
    battles, encoded, style_a, style_b = small_arena(1)
    fit = fit_style_control(
        encoded.a,
        encoded.b,
        encoded.outcome,
        style_a,
        style_b,
        models=encoded.models,
        convention=convention,  # type: ignore[arg-type]
        reweighted=reweighted,
    )
    weights = None
    if reweighted:
        pair = np.minimum(encoded.a, encoded.b) * 10 + np.maximum(encoded.a, encoded.b)
        count = pd.Series(pair).map(pd.Series(pair).value_counts()).to_numpy(dtype=float)
        weights = 1.0 / np.maximum(count, 50)
        weights /= weights.mean()
    x = optimum_by_scipy(encoded, style_a, style_b, convention, fit.reg, weights)
    m = len(encoded.models)
    assert np.abs(fit.strengths - x[:m]).max() * POINTS < 0.01
    assert np.abs(fit.coefficients - x[m:]).max() < 1e-5
    assert abs(fit.strengths.mean()) < 1e-12


def test_defaults_are_fastchats() -> None:
    assert DEFAULT_REG == {"fastchat": 0.5, "arena-rank": 1.0}
    assert STYLE_ELEMENTS == ("tokens", "headers", "lists", "bold")
    _, encoded, style_a, style_b = small_arena(2, n=500)
    fit = fit_style_control(
        encoded.a, encoded.b, encoded.outcome, style_a, style_b, models=encoded.models
    )
    assert (fit.convention, fit.reg, fit.reweighted) == ("fastchat", 0.5, False)
    assert (fit.scale, fit.base, fit.init) == (400.0, 10.0, 1000.0)
    assert fit.ratings.mean() == pytest.approx(1000.0)


def test_agrees_with_fastchats_fit_run_to_a_tight_tolerance() -> None:
    _, encoded, style_a, style_b = small_arena(3)
    fit = fit_style_control(
        encoded.a, encoded.b, encoded.outcome, style_a, style_b, models=encoded.models
    )
    matchups = np.column_stack([encoded.a, encoded.b])
    ratings, coefficients = compute_style_control(
        matchups,
        style_a,
        style_b,
        SCORE_A[encoded.outcome],
        len(encoded.models),
        tol=1e-10,
        max_iter=20000,
    )
    assert np.abs(fit.ratings - ratings).max() < 0.01
    # L-BFGS-B stops on its relative change of the loss (ftol 2.2e-9) first, a little short.
    assert np.abs(fit.coefficients - coefficients).max() < 1e-4


# arena-rank's answers on small_arena(4, n=4000), run to a tight tolerance and kept here, so that
# the comparison runs where arena-rank is not installed (it is a benchmark extra, with a numpy pin
# of its own). Where it is installed the test runs it too and checks the file still holds its
# answers; ARENA_WRITE_REFERENCES=1 rewrites the file from it.
ARENA_RANK_REFERENCE = Path(__file__).parent / "arena_rank_style_reference.json"


def _arena_rank_live(reweighted: bool) -> dict[str, list[float]] | None:
    try:
        from arena_rank.models.contextual_bradley_terry import ContextualBradleyTerry
        from arena_rank.utils.data_utils import ContextualPairDataset
    except ImportError:
        return None
    battles, encoded, style_a, style_b = small_arena(4, n=4000)
    frame = battles[["model_a", "model_b", "winner"]].copy()
    frame["winner"] = frame["winner"].replace({"tie (bothbad)": "both_bad"})
    differences = normalised_differences(style_a, style_b)
    for e, element in enumerate(STYLE_ELEMENTS):
        frame[element] = differences[:, e]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = ContextualPairDataset.from_pandas(
            frame, list(STYLE_ELEMENTS), reweighted=reweighted
        )
        model = ContextualBradleyTerry(
            len(encoded.models), 4, max_iter=20000, gtol=1e-12, ftol=1e-16
        )
        theirs = model.compute_ratings_and_cis(dataset)
    assert list(dataset.competitors) == list(encoded.models)
    return {
        key: [float(v) for v in np.asarray(theirs[key])]
        for key in ("ratings", "coeffs", "rating_lower", "rating_upper")
    }


def _arena_rank_reference(reweighted: bool) -> dict[str, list[float]]:
    stored = json.loads(ARENA_RANK_REFERENCE.read_text())
    key = "reweighted" if reweighted else "plain"
    live = _arena_rank_live(reweighted)
    if live is not None:
        if os.environ.get("ARENA_WRITE_REFERENCES") == "1":
            stored[key] = live
            ARENA_RANK_REFERENCE.write_text(json.dumps(stored, indent=1) + "\n")
        for name, values in live.items():
            assert np.allclose(values, stored[key][name], rtol=0, atol=1e-6), name
    return {name: list(values) for name, values in stored[key].items()}


@pytest.mark.parametrize("reweighted", [False, True])
def test_agrees_with_arena_rank_fit_and_sandwich(reweighted: bool) -> None:
    theirs = _arena_rank_reference(reweighted)
    _, encoded, style_a, style_b = small_arena(4, n=4000)
    fit = fit_style_control(
        encoded.a,
        encoded.b,
        encoded.outcome,
        style_a,
        style_b,
        models=encoded.models,
        convention="arena-rank",
        reweighted=reweighted,
    )
    assert np.abs(fit.ratings - np.asarray(theirs["ratings"])).max() < 0.01
    assert np.abs(fit.coefficients - np.asarray(theirs["coeffs"])).max() < 1e-5
    m = len(encoded.models)
    sd = np.sqrt(np.diag(style_sandwich_covariance(fit, ridge=HESSIAN_RIDGE)))[:m]
    ours = 2 * z_value(0.95) * fit.points_per_unit * sd
    their_width = np.asarray(theirs["rating_upper"]) - np.asarray(theirs["rating_lower"])
    assert np.abs(ours / their_width - 1).max() < 0.02


def test_sandwich_equals_the_dense_formula() -> None:
    _, encoded, style_a, style_b = small_arena(5, n=3000)
    for convention in ("fastchat", "arena-rank"):
        fit = fit_style_control(
            encoded.a,
            encoded.b,
            encoded.outcome,
            style_a,
            style_b,
            models=encoded.models,
            convention=convention,  # type: ignore[arg-type]
        )
        m, n = len(encoded.models), encoded.n_battles
        f = standardised(style_a.astype(float), style_b.astype(float))
        x = np.zeros((n, m + f.shape[1]))
        x[np.arange(n), encoded.a] = 1.0
        x[np.arange(n), encoded.b] = -1.0
        x[:, m:] = f
        phi = fit.params
        p = expit(x @ phi)
        y = SCORE_A[encoded.outcome]
        hessian = (x * (p * (1 - p))[:, None]).T @ x + HESSIAN_RIDGE * n * np.eye(m + 4)
        penalty = fit.ridge * phi
        gradient_cov = (x * ((y - p) ** 2)[:, None]).T @ x - np.outer(penalty, penalty) / n**2
        inverse = np.linalg.inv(hessian)
        expected = np.diag(inverse @ gradient_cov @ inverse)
        got = np.diag(style_sandwich_covariance(fit, ridge=HESSIAN_RIDGE))
        assert got == pytest.approx(expected, rel=1e-5)


def test_swapping_sides_and_relabelling_models_change_nothing() -> None:
    _, encoded, style_a, style_b = small_arena(6, n=3000)
    fit = fit_style_control(
        encoded.a, encoded.b, encoded.outcome, style_a, style_b, models=encoded.models
    )
    flipped_outcome = np.array([1, 0, 2, 3])[encoded.outcome]
    swapped = fit_style_control(
        encoded.b, encoded.a, flipped_outcome, style_b, style_a, models=encoded.models
    )
    assert swapped.strengths == pytest.approx(fit.strengths, abs=1e-9)
    assert swapped.coefficients == pytest.approx(fit.coefficients, abs=1e-9)
    permutation = np.array([3, 0, 4, 1, 2])
    relabelled = fit_style_control(
        permutation[encoded.a],
        permutation[encoded.b],
        encoded.outcome,
        style_a,
        style_b,
        models=[encoded.models[i] for i in np.argsort(permutation)],
    )
    assert relabelled.strengths[permutation] == pytest.approx(fit.strengths, abs=1e-9)


def test_without_style_elements_it_is_plain_bradley_terry() -> None:
    battles, encoded, _, _ = small_arena(8, n=3000)
    empty = np.zeros((encoded.n_battles, 0))
    fit = fit_style_control(
        encoded.a,
        encoded.b,
        encoded.outcome,
        empty,
        empty,
        models=encoded.models,
        elements=(),
        convention="arena-rank",
    )
    plain = fit_bradley_terry(aggregate_battles(battles))
    assert np.abs(fit.ratings - plain.ratings).max() < 1e-6


def test_an_element_that_never_varies_gets_a_zero_coefficient() -> None:
    _, encoded, style_a, style_b = small_arena(9, n=3000)
    style_a, style_b = style_a.copy(), style_b.copy()
    style_a[:, 3] = style_b[:, 3] = 0
    fit = fit_style_control(
        encoded.a, encoded.b, encoded.outcome, style_a, style_b, models=encoded.models
    )
    three = fit_style_control(
        encoded.a,
        encoded.b,
        encoded.outcome,
        style_a[:, :3],
        style_b[:, :3],
        models=encoded.models,
        elements=STYLE_ELEMENTS[:3],
    )
    assert fit.coefficients[3] == 0.0 and fit.feature_sd[3] == 0.0
    assert fit.strengths == pytest.approx(three.strengths, abs=1e-10)


def test_each_bootstrap_round_is_the_optimum_of_its_resample() -> None:
    _, encoded, style_a, style_b = small_arena(10, n=4000)
    fit = fit_style_control(
        encoded.a, encoded.b, encoded.outcome, style_a, style_b, models=encoded.models
    )
    samples = bootstrap_style_control(fit, rounds=3, rng=np.random.default_rng(11))
    n, m = encoded.n_battles, len(encoded.models)
    f = standardised(style_a.astype(float), style_b.astype(float))
    x = np.zeros((n, m + 4))
    x[np.arange(n), encoded.a] = 1.0
    x[np.arange(n), encoded.b] = -1.0
    x[:, m:] = f
    y = SCORE_A[encoded.outcome]
    ridge = np.concatenate([np.full(m, 0.5 / math.log(10) ** 2), np.full(4, 0.5)])
    # The same draws as the bootstrap makes, per round.
    for r, round_rng in enumerate(np.random.default_rng(11).spawn(3)):
        counts = resample_counts(round_rng, n)
        phi = samples[r]
        p = expit(x @ phi)
        gradient = x.T @ (counts * (y - p)) - ridge * phi
        hessian = (x * (counts * p * (1 - p))[:, None]).T @ x + np.diag(ridge)
        # One exact Newton step from the round's answer: how far it is from the optimum.
        assert np.abs(np.linalg.solve(hessian, gradient)).max() * POINTS < 1e-3
        assert np.abs(phi - fit.params).max() > 1e-4  # a different resample


def test_resampled_counts_follow_the_multinomial_law() -> None:
    rng = np.random.default_rng(17)
    n = 100_003  # more than one block, the last one short
    draws = np.array([resample_counts(rng, n) for _ in range(20)])
    assert np.all(draws.sum(axis=1) == n)
    assert np.all(draws >= 0) and np.all(draws == np.rint(draws))
    # Each battle's count is Binomial(n, 1/n): mean 1, variance 1 - 1/n; P(0) = (1 - 1/n)^n.
    assert draws.mean() == pytest.approx(1.0)
    assert draws.var() == pytest.approx(1.0, abs=0.01)
    assert (draws == 0).mean() == pytest.approx(math.exp(-1), abs=0.003)
    # Blocks are not favoured: the mean count of each block of positions stays near 1.
    blocks = draws.sum(axis=0)[: 3 * 32768].reshape(3, -1).mean(axis=1) / 20
    assert np.abs(blocks - 1).max() < 0.01


def test_bootstrap_and_sandwich_intervals_agree() -> None:
    battles, _, _, _ = small_arena(12, n=20_000)
    sandwich = compute_leaderboard(battles, method="bt-style", fragility=False).to_frame()
    boot = compute_leaderboard(
        battles, method="bt-style", bootstrap_rounds=200, seed=3, fragility=False
    ).to_frame()
    width_s = (sandwich["ci_upper"] - sandwich["ci_lower"]).to_numpy()
    width_b = boot.set_index("model").loc[sandwich["model"]]
    ratio = (width_b["ci_upper"] - width_b["ci_lower"]).to_numpy() / width_s
    assert np.all((ratio > 0.75) & (ratio < 1.3))


def test_leaderboard_json_names_the_convention_and_the_coefficients() -> None:
    battles, encoded, style_a, style_b = small_arena(13, n=5000)
    battles.loc[:9, "conv_metadata"] = None
    board = compute_leaderboard(battles, method="bt-style", anchor=("model-01", 1114.0))
    data = json.loads(json.dumps(board.to_json_dict(), allow_nan=False))
    assert data["method"] == "bt-style"
    assert data["n_battles"] == 4990
    params = data["params"]
    assert params["style_convention"] == "fastchat" and params["style_reg"] == 0.5
    assert params["battles_without_style"] == 10
    assert params["style_elements"] == ["tokens", "headers", "lists", "bold"]
    assert params["interval"] == "sandwich"
    rows = {row["model"]: row for row in data["models"]}
    assert rows["model-01"]["rating"] == pytest.approx(1114.0)
    coefficients = data["style_coefficients"]
    assert [c["element"] for c in coefficients] == list(STYLE_ELEMENTS)
    fit = fit_style_control(
        encoded.a[10:],
        encoded.b[10:],
        encoded.outcome[10:],
        style_a[10:],
        style_b[10:],
        models=encoded.models,
    )
    tokens = coefficients[0]
    assert tokens["coefficient"] == pytest.approx(fit.coefficients[0], abs=1e-9)
    assert tokens["rating_points"] == pytest.approx(tokens["coefficient"] * POINTS)
    assert tokens["odds_ratio"] == pytest.approx(math.exp(tokens["coefficient"]))
    assert tokens["ci_lower"] < tokens["coefficient"] < tokens["ci_upper"]
    assert tokens["odds_ratio_lower"] == pytest.approx(math.exp(tokens["ci_lower"]))
    assert tokens["rating_points_upper"] == pytest.approx(tokens["ci_upper"] * POINTS)


def test_style_columns_and_conv_metadata_read_the_same() -> None:
    battles, _, style_a, style_b = small_arena(14, n=50)
    from_metadata = style_arrays(battles)
    columns = battles.drop(columns="conv_metadata")
    for e, element in enumerate(STYLE_ELEMENTS):
        columns[f"style_a_{element}"] = style_a[:, e]
        columns[f"style_b_{element}"] = style_b[:, e]
    from_columns = style_arrays(columns)
    as_text = battles.assign(conv_metadata=[json.dumps(m) for m in battles["conv_metadata"]])
    for got in (from_metadata, from_columns, style_arrays(as_text)):
        assert np.array_equal(got[0], style_a) and np.array_equal(got[1], style_b)


def test_bad_style_input_is_refused_with_a_reason() -> None:
    battles, encoded, style_a, style_b = small_arena(15, n=200)
    with pytest.raises(InvalidBattles, match="conv_metadata"):
        compute_leaderboard(battles.drop(columns="conv_metadata"), method="bt-style")
    with pytest.raises(InvalidBattles, match="none of the 200 battles"):
        compute_leaderboard(battles.assign(conv_metadata=None), method="bt-style")
    with pytest.raises(InvalidBattles, match="cannot be negative"):
        fit_style_control(
            encoded.a, encoded.b, encoded.outcome, -style_a, style_b, models=encoded.models
        )
    with pytest.raises(InvalidBattles, match="convention"):
        compute_leaderboard(battles, method="bt-style", style_convention="lmsys")  # type: ignore[arg-type]


def test_the_callers_arrays_are_left_as_they_were() -> None:
    _, encoded, style_a, style_b = small_arena(16, n=500)
    float_a, float_b = style_a.astype(float), style_b.astype(float)
    kept_a, kept_b = float_a.copy(), float_b.copy()
    first = fit_style_control(
        encoded.a, encoded.b, encoded.outcome, float_a, float_b, models=encoded.models
    )
    again = fit_style_control(
        encoded.a, encoded.b, encoded.outcome, float_a, float_b, models=encoded.models
    )
    assert np.array_equal(float_a, kept_a) and np.array_equal(float_b, kept_b)
    assert np.array_equal(first.params, again.params)
