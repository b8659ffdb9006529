"""Rating engine benchmark (issue 6): ours against arena-rank and the FastChat way, in one run.

    pip install -e '.[bench]'      # arena-rank (and jax), scikit-learn
    python bench/ratings.py        # a few minutes on 2 cores

Times, on the same simulated battles (100 models with known strengths, 2,000,000 battles, 20% ties):
(a) arena-rank: PairDataset.from_pandas, BradleyTerry fit, sandwich intervals (cold, then warm);
(b) ours: compute_leaderboard, same method (Bradley-Terry, sandwich);
(c) the FastChat way, written here from its description: every bootstrap round resamples the battle
    rows, rebuilds the win / tie pivot tables and refits a logistic regression (scikit-learn);
    only --fastchat-rounds rounds are run and the time is scaled to 100;
(d) ours with 100 bootstrap rounds (cold: the first in the process, loading the compiled kernels;
    then warm);
(e) ours with 1,000 bootstrap rounds on 10,000,000 battles.
Style control (--style-battles, 2,000,000 by default, with answer lengths and Markdown counts):
(f) arena-rank: ContextualPairDataset.from_pandas, ContextualBradleyTerry fit and sandwich;
(g) ours: compute_leaderboard(method="bt-style") in arena-rank's convention, same table;
(h) FastChat's compute_style_control and compute_bootstrap_style_control, re-implemented in
    bench/fastchat_style_control.py (scipy L-BFGS-B on its objective; it cannot be installed here):
    the baseline; only --style-fastchat-rounds rounds are run and the time is scaled to 100;
(i) ours with 100 bootstrap rounds in FastChat's convention.
--only-style runs (f) to (i) alone. It prints times, ratios, the largest differences between
point estimates and between interval bounds, and each solution's distance to the exact
maximum-likelihood solution, measured as the length of one exact Newton step from it
(independent of the solver that produced it).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy.special import expit

from arena.ratings import (
    STYLE_COLUMNS,
    PairCounts,
    aggregate_battles,
    compute_leaderboard,
    encode_battles,
    fit_style_control,
    style_sandwich_covariance,
)
from arena.ratings.intervals import HESSIAN_RIDGE
from arena.ratings.style_control import STYLE_ELEMENTS, normalised_differences
from bench.fastchat_style_control import (
    compute_bootstrap_style_control,
    compute_style_control,
)

T = TypeVar("T")
POINTS = 400 / math.log(10)
WINNERS = np.array(["model_a", "model_b", "tie", "tie (bothbad)"], dtype=object)


def simulate(n_models: int, n_battles: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Battles between uniform random pairs from normal strengths (sd 0.6 nats, about 100 points);
    20% ties, half of them 'tie (bothbad)'."""
    rng = np.random.default_rng(seed)
    strengths = rng.normal(0.0, 0.6, n_models)
    names = np.array([f"model-{i:03d}" for i in range(n_models)], dtype=object)
    a = rng.integers(0, n_models, n_battles)
    b = (a + rng.integers(1, n_models, n_battles)) % n_models
    a_wins = rng.random(n_battles) < expit(strengths[a] - strengths[b])
    tie = rng.random(n_battles)
    code = np.where(tie < 0.1, 2, np.where(tie < 0.2, 3, np.where(a_wins, 0, 1)))
    battles = pd.DataFrame(
        {
            "model_a": names[a],
            "model_b": names[b],
            "winner": WINNERS[code],
            "tstamp": 1.7e9 + np.arange(n_battles, dtype=np.float64),
        }
    )
    return battles, strengths


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def newton_distance(counts: PairCounts, ratings: pd.Series) -> float:
    """Rating points from `ratings` to the exact MLE: one exact Newton step (gauge: mean zero)."""
    theta = ratings.loc[list(counts.models)].to_numpy(dtype=np.float64) / POINTS
    theta -= theta.mean()
    m = counts.n_models
    p = expit(theta[counts.lo] - theta[counts.hi])
    residual = counts.wins_lo + 0.5 * counts.ties - counts.totals * p
    gradient = np.bincount(counts.lo, residual, m) - np.bincount(counts.hi, residual, m)
    curvature = counts.totals * p * (1 - p)
    hessian = np.zeros((m, m))
    np.add.at(hessian, (counts.lo, counts.hi), -curvature)
    np.add.at(hessian, (counts.hi, counts.lo), -curvature)
    hessian[np.diag_indices(m)] = -hessian.sum(axis=1)
    step = np.linalg.solve(hessian + np.ones((m, m)), gradient)
    return float(np.abs(step - step.mean()).max() * POINTS)


def arena_rank_sandwich(battles: pd.DataFrame) -> pd.DataFrame:
    from arena_rank.models.bradley_terry import BradleyTerry
    from arena_rank.utils.data_utils import PairDataset

    dataset = PairDataset.from_pandas(battles)
    result = BradleyTerry(len(dataset.competitors)).compute_ratings_and_cis(dataset)
    return pd.DataFrame(
        {
            "rating": np.asarray(result["ratings"]),
            "ci_lower": np.asarray(result["rating_lower"]),
            "ci_upper": np.asarray(result["rating_upper"]),
        },
        index=pd.Index(result["competitors"], name="model"),
    )


def fastchat_style_fit(battles: pd.DataFrame, models: list[str]) -> pd.Series:
    """FastChat's notebook method, rewritten: pivot tables of wins and ties, then one weighted
    logistic-regression row per ordered pair and outcome (a tie is one win for each side, decisive
    battles count twice), no intercept, no penalty."""
    from sklearn.linear_model import LogisticRegression

    def pivot(rows: pd.DataFrame) -> np.ndarray:
        table = pd.pivot_table(
            rows, index="model_a", columns="model_b", aggfunc="size", fill_value=0
        )
        return table.reindex(index=models, columns=models, fill_value=0).to_numpy(dtype=float)

    winner = battles["winner"]
    a_wins = pivot(battles[winner == "model_a"])
    b_wins = pivot(battles[winner == "model_b"])
    ties = pivot(battles[winner.isin(["tie", "tie (bothbad)"])])
    beats = 2 * a_wins + 2 * b_wins.T + ties + ties.T
    m = len(models)
    i, j = np.nonzero(~np.eye(m, dtype=bool))
    x = np.zeros((2 * i.size, m))
    rows = np.arange(i.size)
    for half in (0, 1):
        x[rows + half * i.size, i] = math.log(10)
        x[rows + half * i.size, j] = -math.log(10)
    y = np.concatenate([np.ones(i.size), np.zeros(i.size)])
    weight = np.concatenate([beats[i, j], beats[j, i]])
    keep = weight > 0
    model = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x[keep], y[keep], sample_weight=weight[keep])
    return pd.Series(400 * model.coef_[0] + 1000, index=models)


def frame_of(board: Any) -> pd.DataFrame:
    return board.to_frame().set_index("model")


def report_differences(label: str, ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    theirs = theirs.loc[ours.index]
    rating = (ours["rating"] - theirs["rating"]).abs().max()
    bounds = max(
        (ours["ci_lower"] - theirs["ci_lower"]).abs().max(),
        (ours["ci_upper"] - theirs["ci_upper"]).abs().max(),
    )
    width_ours = ours["ci_upper"] - ours["ci_lower"]
    width_theirs = theirs["ci_upper"] - theirs["ci_lower"]
    width = ((width_ours / width_theirs) - 1).abs()
    print(
        f"    {label}: max |rating diff| {rating:.2e}, max |bound diff| {bounds:.2e},"
        f" interval-width diff max {100 * width.max():.3g}% (median {100 * width.median():.3g}%)"
    )


def simulate_style(n_models: int, n_battles: int, seed: int) -> pd.DataFrame:
    """Battles whose outcome depends on the strengths and on answer length: model j answers with
    Gamma(2, mean verbosity_j) tokens, Poisson headers, list items and bold spans; side a wins
    with probability sigmoid(s_a - s_b + 0.4 f), f the standardised length ratio; 10% ties."""
    rng = np.random.default_rng(seed)
    strengths = rng.normal(0.0, 0.6, n_models)
    verbosity = rng.uniform(200.0, 1200.0, n_models)
    names = np.array([f"model-{i:03d}" for i in range(n_models)], dtype=object)
    a = rng.integers(0, n_models, n_battles)
    b = (a + rng.integers(1, n_models, n_battles)) % n_models
    columns: dict[str, Any] = {"model_a": names[a], "model_b": names[b]}
    for side, models in (("a", a), ("b", b)):
        columns[f"style_{side}_tokens"] = np.rint(rng.gamma(2.0, verbosity[models] / 2.0))
        for element, mean in (("headers", 1.0), ("lists", 3.0), ("bold", 2.0)):
            columns[f"style_{side}_{element}"] = rng.poisson(mean, n_battles).astype(float)
    ratio = normalised_differences(columns["style_a_tokens"], columns["style_b_tokens"])
    feature = (ratio - ratio.mean()) / ratio.std()
    a_wins = rng.random(n_battles) < expit(strengths[a] - strengths[b] + 0.4 * feature)
    code = np.where(rng.random(n_battles) < 0.1, 2, np.where(a_wins, 0, 1))
    columns["winner"] = WINNERS[code]
    columns["tstamp"] = 1.7e9 + np.arange(n_battles, dtype=np.float64)
    return pd.DataFrame(columns)


def arena_rank_style(battles: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """arena-rank's ContextualBradleyTerry with sandwich intervals, on the normalised differences
    (its from_pandas standardises them, as FastChat does)."""
    from arena_rank.models.contextual_bradley_terry import ContextualBradleyTerry
    from arena_rank.utils.data_utils import ContextualPairDataset

    frame = battles[["model_a", "model_b", "winner"]].copy()
    frame["winner"] = frame["winner"].replace({"tie (bothbad)": "both_bad"})
    for element in STYLE_ELEMENTS:
        frame[element] = normalised_differences(
            battles[f"style_a_{element}"].to_numpy(), battles[f"style_b_{element}"].to_numpy()
        )
    dataset = ContextualPairDataset.from_pandas(frame, list(STYLE_ELEMENTS), reweighted=False)
    model = ContextualBradleyTerry(len(dataset.competitors), len(STYLE_ELEMENTS))
    result = model.compute_ratings_and_cis(dataset)
    table = pd.DataFrame(
        {
            "rating": np.asarray(result["ratings"]),
            "ci_lower": np.asarray(result["rating_lower"]),
            "ci_upper": np.asarray(result["rating_upper"]),
        },
        index=pd.Index(result["competitors"], name="model"),
    )
    return table, np.asarray(result["coeffs"])


def style_benchmark(args: argparse.Namespace) -> None:
    battles = simulate_style(args.models, args.style_battles, args.seed + 2)
    encoded = encode_battles(battles)
    style = battles[list(STYLE_COLUMNS)].to_numpy()
    style_a, style_b = style[:, :4], style[:, 4:]
    m = len(encoded.models)
    print(f"style control: {args.models} models, {len(battles):,} battles with style features")

    def ours_sandwich() -> Any:
        return compute_leaderboard(
            battles, method="bt-style", style_convention="arena-rank", fragility=False
        )

    ours_sandwich()
    board, ours_time = timed(ours_sandwich)
    ours = frame_of(board)
    fit, fit_time = timed(
        lambda: fit_style_control(
            encoded.a,
            encoded.b,
            encoded.outcome,
            style_a,
            style_b,
            models=encoded.models,
            convention="arena-rank",
        )
    )
    _, sandwich_time = timed(lambda: style_sandwich_covariance(fit, ridge=HESSIAN_RIDGE))
    print(
        f"(g) ours, style control + sandwich from the table: {ours_time:.2f} s"
        f" (the fit alone {fit_time:.2f} s in {fit.iterations} Newton steps, the sandwich"
        f" {sandwich_time:.2f} s)"
    )
    try:
        import arena_rank  # noqa: F401

        have_arena_rank = True
    except ImportError:
        have_arena_rank = False
        print("(f) arena-rank is not installed (pip install -e '.[bench]'); skipped")
    if have_arena_rank:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, cold = timed(lambda: arena_rank_style(battles))
            (theirs, their_coefficients), warm = timed(lambda: arena_rank_style(battles))
        print(
            f"(f) arena-rank ContextualBradleyTerry fit + sandwich: {cold:.1f} s cold (JIT),"
            f" {warm:.1f} s warm"
        )
        print(
            f"    (g) is {warm / ours_time:.1f}x faster than warm (f),"
            f" {cold / ours_time:.1f}x faster than cold (f)"
        )
        report_differences("(g) vs (f)", ours, theirs)
        print(
            "    max |coefficient diff| (g) vs (f):"
            f" {np.abs(fit.coefficients - their_coefficients).max():.2e}"
            " (arena-rank stops at its relative tolerance 1e-9; ours is the optimum to rounding)"
        )

    fastchat_fit = fit_style_control(
        encoded.a, encoded.b, encoded.outcome, style_a, style_b, models=encoded.models
    )
    matchups = np.column_stack([encoded.a, encoded.b])
    score_a = np.array([1.0, 0.0, 0.5, 0.5])[encoded.outcome]
    (fc_ratings, _), fc_fit_time = timed(
        lambda: compute_style_control(matchups, style_a, style_b, score_a, m)
    )
    rng = np.random.default_rng(args.seed)
    (fc_samples, _), fc_time = timed(
        lambda: compute_bootstrap_style_control(
            matchups, style_a, style_b, score_a, m, args.style_fastchat_rounds, rng
        )
    )
    per_round = fc_time / args.style_fastchat_rounds
    fastchat_100 = 100 * per_round
    print(
        "(h) FastChat's style control (re-implemented: the baseline): full-data fit"
        f" {fc_fit_time:.1f} s, {np.abs(fc_ratings - fastchat_fit.ratings).max():.3f} points"
        f" from the optimum (its L-BFGS stops at 100 iterations or its tolerances);"
        f" {args.style_fastchat_rounds} bootstrap rounds run, {per_round:.1f} s each, so 100"
        f" rounds = {fastchat_100:.0f} s (extrapolated; FastChat spreads the rounds over a"
        " process pool, at best 2x on this 2-core machine)"
    )

    def ours_bootstrap() -> Any:
        return compute_leaderboard(
            battles, method="bt-style", bootstrap_rounds=100, seed=1, fragility=False
        )

    boot_board, boot_time = timed(ours_bootstrap)
    print(f"(i) ours, style control with 100 bootstrap rounds from the table: {boot_time:.2f} s")
    print(
        f"    (i) is {fastchat_100 / boot_time:.0f}x faster than (h) run round after round,"
        f" {fastchat_100 / 2 / boot_time:.0f}x faster than (h) on a perfect 2-process pool"
    )
    boot = frame_of(boot_board)
    samples = pd.DataFrame(fc_samples, columns=list(encoded.models))
    fastchat = pd.DataFrame(
        {
            "rating": pd.Series(fc_ratings, index=list(encoded.models)),
            "ci_lower": samples.quantile(0.025),
            "ci_upper": samples.quantile(0.975),
        }
    )
    report_differences(
        f"(i) vs (h) [h's bounds from only {args.style_fastchat_rounds} rounds: Monte Carlo noise]",
        boot,
        fastchat,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--battles", type=int, default=2_000_000)
    parser.add_argument("--fastchat-rounds", type=int, default=10)
    parser.add_argument("--big-battles", type=int, default=10_000_000)
    parser.add_argument("--big-rounds", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--style-battles", type=int, default=2_000_000)
    parser.add_argument("--style-fastchat-rounds", type=int, default=3)
    parser.add_argument("--only-style", action="store_true")
    args = parser.parse_args()
    if args.only_style:
        style_benchmark(args)
        return

    battles, _ = simulate(args.models, args.battles, args.seed)
    counts = aggregate_battles(battles)
    models = list(counts.models)
    print(
        f"{args.models} models, {len(battles):,} battles ({counts.n_pairs} pairs),"
        f" string columns {battles['model_a'].dtype}"
    )

    try:
        import arena_rank  # noqa: F401

        have_arena_rank = True
    except ImportError:
        have_arena_rank = False
        print("(a) arena-rank is not installed (pip install -e '.[bench]'); skipped")
    if have_arena_rank:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, cold = timed(lambda: arena_rank_sandwich(battles))
            theirs, warm = timed(lambda: arena_rank_sandwich(battles))
        print(
            f"(a) arena-rank PairDataset + fit + sandwich: {cold:.2f} s cold (JIT),"
            f" {warm:.2f} s warm"
        )

    ours_board, _ = timed(lambda: compute_leaderboard(battles))
    ours_board, ours_time = timed(lambda: compute_leaderboard(battles))
    ours = frame_of(ours_board)
    print(f"(b) ours, Bradley-Terry + sandwich from the same table: {ours_time:.3f} s")
    if have_arena_rank:
        print(
            f"    (b) is {warm / ours_time:.0f}x faster than warm (a),"
            f" {cold / ours_time:.0f}x faster than cold (a)"
        )
        report_differences("(b) vs (a)", ours, theirs)

    fastchat_point, fastchat_fit_time = timed(lambda: fastchat_style_fit(battles, models))
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    fastchat_rounds = []
    for _ in range(args.fastchat_rounds):
        sample = battles.sample(frac=1.0, replace=True, random_state=rng)
        fastchat_rounds.append(fastchat_style_fit(sample, models))
    per_round = (time.perf_counter() - start) / args.fastchat_rounds
    fastchat_100 = per_round * 100
    print(
        f"(c) FastChat way: full-data fit {fastchat_fit_time:.2f} s; {args.fastchat_rounds} rounds"
        f" run, {per_round:.2f} s each, so 100 rounds = {fastchat_100:.0f} s (extrapolated)"
    )

    # Cold: the first bootstrap of a process imports numba and loads its compiled kernels from
    # the disk cache, as a one-off `arena ratings compute --bootstrap` does; warm: the recompute.
    _, boot_cold = timed(lambda: compute_leaderboard(battles, bootstrap_rounds=100, seed=1))
    boot_board, boot_time = timed(
        lambda: compute_leaderboard(battles, bootstrap_rounds=100, seed=1)
    )
    boot = frame_of(boot_board)
    print(
        f"(d) ours, 100 bootstrap rounds: {boot_cold:.3f} s cold (kernels), {boot_time:.3f} s warm"
    )
    print(
        f"    (d) is {fastchat_100 / boot_time:.0f}x faster than (c) warm,"
        f" {fastchat_100 / boot_cold:.0f}x cold"
    )
    samples = pd.DataFrame(fastchat_rounds)
    fastchat = pd.DataFrame(
        {
            "rating": fastchat_point,
            "ci_lower": samples.quantile(0.025),
            "ci_upper": samples.quantile(0.975),
        }
    )
    report_differences(
        f"(d) vs (c) [c's bounds from only {args.fastchat_rounds} rounds: Monte Carlo noise]",
        boot,
        fastchat,
    )
    report_differences("(d) bootstrap vs (b) sandwich", boot, ours)

    print("distance to the exact maximum-likelihood ratings (one exact Newton step, points):")
    print(f"    (b) ours: {newton_distance(counts, ours['rating']):.2e}")
    if have_arena_rank:
        print(f"    (a) arena-rank: {newton_distance(counts, theirs['rating']):.2e}")
    print(f"    (c) FastChat logistic regression: {newton_distance(counts, fastchat_point):.2e}")

    big, _ = simulate(args.models, args.big_battles, args.seed + 1)
    big_board, big_time = timed(
        lambda: compute_leaderboard(big, bootstrap_rounds=args.big_rounds, seed=2)
    )
    _, big_sandwich = timed(lambda: compute_leaderboard(big))
    print(
        f"(e) ours, {args.big_rounds} bootstrap rounds on {big_board.n_battles:,} battles:"
        f" {big_time:.2f} s end to end from the table (the same call without bootstrap, that is"
        f" reading the table, hashing, fitting and the sandwich, takes {big_sandwich:.2f} s)"
    )
    style_benchmark(args)


if __name__ == "__main__":
    main()
