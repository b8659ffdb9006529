"""One call from a battles table to a leaderboard: ratings, intervals, ranks, votes, win rates."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from arena.ratings.battles import (
    EncodedBattles,
    FloatArray,
    battle_order,
    count_pairs,
    encode_battles,
    vote_set_hash,
)
from arena.ratings.bradley_terry import BradleyTerryFit, check_ratings_exist, fit_bradley_terry
from arena.ratings.categories import ALL, category_mask
from arena.ratings.elo import BASE, ELO_K, INIT_RATING, SCALE, online_elo_encoded
from arena.ratings.errors import InvalidBattles
from arena.ratings.fragility import Fragility, rank_fragility
from arena.ratings.intervals import (
    CONFIDENCE,
    HESSIAN_RIDGE,
    RatingIntervals,
    bootstrap_bradley_terry,
    bootstrap_elo,
    bootstrap_intervals,
    rank_upper_bound,
    sandwich_intervals,
    z_value,
)
from arena.ratings.matrices import average_win_rate
from arena.ratings.style_control import (
    CONVENTIONS,
    STYLE_ELEMENTS,
    Convention,
    StyleCoefficient,
    bootstrap_style_control,
    fit_style_control,
    style_arrays,
    style_coefficients,
    style_sandwich_covariance,
)

Method = Literal["bt", "elo", "bt-style"]
METHODS: Final[tuple[Method, ...]] = ("bt", "elo", "bt-style")
Progress = Callable[[int, int], None]
LEADERBOARD_COLUMNS: Final[tuple[str, ...]] = (
    "model",
    "rating",
    "ci_lower",
    "ci_upper",
    "rank",
    "votes",
    "win_rate",
    "swap_votes",
)


@dataclass(frozen=True)
class LeaderboardRow:
    """One model's line: rating, interval bounds (None without an interval), rank (upper bound),
    and `swap_votes`: the fewest votes found whose removal puts the next row's model above this
    one (fragility.py; None for the last row, for online Elo, or when no removal does)."""

    model: str
    rating: float
    ci_lower: float | None
    ci_upper: float | None
    rank: int
    votes: int
    win_rate: float | None
    swap_votes: int | None = None


@dataclass(frozen=True)
class Leaderboard:
    """What compute_leaderboard returns: rows by rating, highest first, and how they were made.

    `params` holds every setting that shaped the numbers (method constants, interval method, rounds,
    seed, anchor, reweighting, category); `vote_set_hash` identifies the votes that went in.
    `intervals` keeps the raw bounds and, for a bootstrap, every round's ratings (model order as
    `models`, that is by name), for plots; it is not part of the JSON. `fragility` (Bradley-Terry
    only) says how many votes hold each adjacent pair and first place, and which votes.
    `style_coefficients` (method bt-style only) holds each style element's fitted effect; the JSON
    then has a "style_coefficients" list (StyleCoefficient.to_json_dict).
    """

    method: Method
    params: Mapping[str, Any]
    vote_set_hash: str
    n_battles: int
    rows: tuple[LeaderboardRow, ...]
    models: tuple[str, ...] = ()
    intervals: RatingIntervals | None = field(default=None, repr=False, compare=False)
    fragility: Fragility | None = None
    style_coefficients: tuple[StyleCoefficient, ...] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """{"method", "params", "vote_set_hash", "n_battles", "models": [{model, rating, ci_lower,
        ci_upper, rank, votes, win_rate, swap_votes}], "fragility": {method, first_place,
        adjacent} or null}, JSON-ready (NaN becomes null); for bt-style also
        "style_coefficients": [{element, coefficient, ci_lower, ci_upper, rating_points, ...}]."""
        style: dict[str, Any] = {}
        if self.style_coefficients is not None:
            points = float(self.params["scale"]) / math.log(float(self.params["base"]))
            style["style_coefficients"] = [c.to_json_dict(points) for c in self.style_coefficients]
        return {
            "method": self.method,
            "params": dict(self.params),
            "vote_set_hash": self.vote_set_hash,
            "n_battles": self.n_battles,
            "fragility": None if self.fragility is None else self.fragility.to_json_dict(),
            "models": [
                {
                    "model": row.model,
                    "rating": row.rating,
                    "ci_lower": row.ci_lower,
                    "ci_upper": row.ci_upper,
                    "rank": row.rank,
                    "votes": row.votes,
                    "win_rate": row.win_rate,
                    "swap_votes": row.swap_votes,
                }
                for row in self.rows
            ],
        } | style

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with LEADERBOARD_COLUMNS, in leaderboard order."""
        frame = pd.DataFrame(
            [
                (
                    r.model,
                    r.rating,
                    r.ci_lower,
                    r.ci_upper,
                    r.rank,
                    r.votes,
                    r.win_rate,
                    r.swap_votes,
                )
                for r in self.rows
            ],
            columns=list(LEADERBOARD_COLUMNS),
        )
        for column in ("rating", "ci_lower", "ci_upper", "win_rate"):
            frame[column] = frame[column].astype("float64")
        frame["swap_votes"] = frame["swap_votes"].astype("Int64")
        return frame

    def ratings(self) -> pd.Series:
        """Ratings indexed by model name, in leaderboard order."""
        return pd.Series(
            [r.rating for r in self.rows],
            index=pd.Index([r.model for r in self.rows], name="model"),
            name="rating",
        )


def with_fragility(board: Leaderboard, fragility: Fragility | None) -> Leaderboard:
    """The board with `fragility` attached (from another table of the same ratings, such as the
    bootstrap table of a Bradley-Terry fit), each row's swap_votes filled from it."""
    by_above = {} if fragility is None else {s.above: s.votes for s in fragility.adjacent}
    rows = tuple(replace(r, swap_votes=by_above.get(r.model)) for r in board.rows)
    return replace(board, rows=rows, fragility=fragility)


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def parse_anchor(text: str) -> tuple[str, float]:
    """'MODEL=RATING' -> (MODEL, RATING); the model name may itself contain '='."""
    model, sep, rating = text.rpartition("=")
    try:
        value = float(rating)
    except ValueError:
        value = math.nan
    if not sep or not model.strip() or not math.isfinite(value):
        raise InvalidBattles(
            f"anchor must look like MODEL=RATING, for example mixtral-8x7b-instruct-v0.1=1114;"
            f" got {text!r}."
        )
    return model.strip(), value


def _anchor_offset(
    models: tuple[str, ...], ratings: FloatArray, anchor: tuple[str, float] | None
) -> float:
    if anchor is None:
        return 0.0
    name, value = anchor
    if name not in models:
        shown = ", ".join(models[:10]) + (" ..." if len(models) > 10 else "")
        raise InvalidBattles(
            f"anchor model {name!r} is not among the {len(models)} rated models ({shown})."
        )
    return float(value - ratings[models.index(name)])


def compute_leaderboard(
    battles: pd.DataFrame,
    *,
    method: Method = "bt",
    bootstrap_rounds: int | None = None,
    seed: int | None = None,
    anchor: tuple[str, float] | None = None,
    reweighted: bool = False,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
    k: float = ELO_K,
    confidence: float = CONFIDENCE,
    category: str = ALL,
    progress: Progress | None = None,
    fragility: bool = True,
    style_convention: Convention = "fastchat",
    style_reg: float | None = None,
    encoded: EncodedBattles | None = None,
    vote_hash: str | None = None,
) -> Leaderboard:
    """Ratings of every model in `battles`, with intervals, rank upper bounds, votes and win rates.

    Every row of `battles` counts (read_battles_file has already left out non-anonymous ones).
    method="bt": the exact Bradley-Terry MLE; intervals by the sandwich estimator, or by
    `bootstrap_rounds` multinomial resamples when given (the rating stays the full-data MLE, as
    FastChat's). method="elo": online Elo in time order with K=k; no interval unless
    `bootstrap_rounds` is given, in which case, as FastChat's `elo` system, every round runs online
    Elo over a resample in random order and the rating is the bootstrap median.
    method="bt-style": Bradley-Terry controlled for answer length and Markdown (style_control.py),
    with `style_convention` (fastchat: ridge reg = 0.5 on everything, the default; arena-rank:
    ridge reg = 1.0 on the style coefficients of the mean log-likelihood) and `style_reg` to
    override reg; the battles need style columns or conv_metadata, and those without are left
    out (counted in params["battles_without_style"]). Intervals as for bt.
    An anchor (model, rating) translates the whole table, bounds included, so that model sits at
    that rating; without one, Bradley-Terry ratings have mean `init`. `bootstrap_rounds` 0 means
    none. `progress(done, total)` is called as the bootstrap advances. With `fragility`, a
    Bradley-Terry board says how many votes hold each adjacent pair and first place
    (fragility.rank_fragility; online Elo has none). Raises InvalidBattles for a
    malformed table, an unknown category or anchor, RatingsUndefined when Bradley-Terry ratings
    would be infinite.

    `encoded` (with category "all") is `battles` already coded, and `vote_hash` its vote-set
    hash: a caller that rates many subsets of one table codes and hashes them once (the
    recompute job); `battles` then needs only the tstamp column, for online Elo's order. For
    bt-style, `vote_hash` is that of the battles rated: those of `battles` with style features.
    """
    if method not in METHODS:
        raise InvalidBattles(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    if method == "elo" and reweighted:
        raise InvalidBattles("reweighting applies to Bradley-Terry only; drop it for method 'elo'.")
    if style_convention not in CONVENTIONS:
        raise InvalidBattles(
            f"style convention must be one of {', '.join(CONVENTIONS)}; got {style_convention!r}."
        )
    if bootstrap_rounds is not None and bootstrap_rounds < 0:
        raise InvalidBattles(f"bootstrap rounds must be 0 or more; got {bootstrap_rounds}.")
    rounds = bootstrap_rounds or None
    if category != ALL:
        battles = battles.loc[category_mask(battles, category)].reset_index(drop=True)
        if len(battles) == 0:
            raise InvalidBattles(f"category {category!r} has no battles.")
    without_style = 0
    if method == "bt-style":
        style_a, style_b = style_arrays(battles)
        has_style: npt.NDArray[np.bool_] = np.asarray(
            np.isfinite(style_a).all(axis=1) & np.isfinite(style_b).all(axis=1), dtype=bool
        )
        without_style = int((~has_style).sum())
        if without_style == len(battles):
            raise InvalidBattles(
                f"none of the {len(battles)} battles has style features; style control needs"
                " conv_metadata (or the style_* columns) for each battle."
            )
        if without_style:
            battles = battles.loc[has_style].reset_index(drop=True)
            style_a, style_b = style_a[has_style], style_b[has_style]

    if encoded is None or category != ALL or without_style:
        encoded = encode_battles(battles)
    counts = count_pairs(encoded)
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {"scale": scale, "base": base, "init": init}
    intervals: RatingIntervals | None
    fit: BradleyTerryFit | None = None
    coefficients: tuple[StyleCoefficient, ...] | None = None
    if method == "bt-style":
        check_ratings_exist(counts)
        style_fit = fit_style_control(
            encoded.a,
            encoded.b,
            encoded.outcome,
            style_a,
            style_b,
            models=encoded.models,
            convention=style_convention,
            reg=style_reg,
            reweighted=reweighted,
            scale=scale,
            base=base,
            init=init,
        )
        ratings = style_fit.ratings
        m = len(encoded.models)
        if rounds is None:
            covariance = style_sandwich_covariance(style_fit, ridge=HESSIAN_RIDGE)
            half = z_value(confidence) * np.sqrt(np.diag(covariance))
            intervals = RatingIntervals(
                lower=ratings - style_fit.points_per_unit * half[:m],
                upper=ratings + style_fit.points_per_unit * half[:m],
                method="sandwich",
                confidence=confidence,
            )
            coef_lower = style_fit.coefficients - half[m:]
            coef_upper = style_fit.coefficients + half[m:]
            params["hessian_ridge"] = HESSIAN_RIDGE
        else:
            samples = bootstrap_style_control(style_fit, rounds=rounds, rng=rng, progress=progress)
            intervals = bootstrap_intervals(
                style_fit.init + style_fit.points_per_unit * samples[:, :m], confidence=confidence
            )
            tail = (1.0 - confidence) / 2.0
            coef_lower, coef_upper = np.quantile(samples[:, m:], [tail, 1.0 - tail], axis=0)
        coefficients = style_coefficients(style_fit, coef_lower, coef_upper)
        params["reweighted"] = reweighted
        params["style_convention"] = style_convention
        params["style_reg"] = style_fit.reg
        params["style_elements"] = list(STYLE_ELEMENTS)
        params["battles_without_style"] = without_style
    elif method == "bt":
        fit = fit_bradley_terry(counts, reweighted=reweighted, scale=scale, base=base, init=init)
        ratings = fit.ratings
        if rounds is None:
            intervals = sandwich_intervals(counts, fit, confidence=confidence)
            params["hessian_ridge"] = HESSIAN_RIDGE
        else:
            samples, redrawn = bootstrap_bradley_terry(
                counts, fit, rounds=rounds, rng=rng, progress=progress
            )
            intervals = bootstrap_intervals(samples, confidence=confidence, redrawn=redrawn)
            # Shown beside the intervals: many redrawn resamples mean thin data, rough intervals.
            params["bootstrap_redrawn"] = redrawn
        params["reweighted"] = reweighted
    else:
        params["k"] = k
        if rounds is None:
            ratings = online_elo_encoded(
                encoded, battle_order(battles), k=k, scale=scale, base=base, init=init
            )
            intervals = None
        else:
            samples = bootstrap_elo(
                encoded,
                rounds=rounds,
                rng=rng,
                k=k,
                scale=scale,
                base=base,
                init=init,
                progress=progress,
            )
            intervals = bootstrap_intervals(samples, confidence=confidence)
            if intervals.median is None:
                raise ValueError("the bootstrap gave no median ratings")
            ratings = intervals.median
    params["interval"] = None if intervals is None else intervals.method
    params["confidence"] = None if intervals is None else confidence
    params["bootstrap_rounds"] = rounds
    params["seed"] = seed if rounds is not None else None
    params["anchor"] = None if anchor is None else {"model": anchor[0], "rating": anchor[1]}
    params["category"] = category

    offset = _anchor_offset(encoded.models, ratings, anchor)
    ratings = ratings + offset
    if intervals is not None:
        intervals = intervals.shifted(offset)
        lower, upper = intervals.lower, intervals.upper
    else:
        lower, upper = ratings, ratings
    ranks = rank_upper_bound(lower, upper)
    votes = counts.votes()
    win_rate = average_win_rate(counts).to_numpy()
    order = sorted(range(len(encoded.models)), key=lambda i: (-ratings[i], encoded.models[i]))
    fragile = rank_fragility(counts, fit, order) if fit is not None and fragility else None
    rows = tuple(
        LeaderboardRow(
            model=encoded.models[i],
            rating=float(ratings[i]),
            ci_lower=None if intervals is None else float(lower[i]),
            ci_upper=None if intervals is None else float(upper[i]),
            rank=int(ranks[i]),
            votes=int(votes[i]),
            win_rate=_finite_or_none(float(win_rate[i])),
        )
        for i in order
    )
    board = Leaderboard(
        method=method,
        params=params,
        vote_set_hash=(vote_hash if vote_hash is not None else vote_set_hash(battles, encoded)),
        n_battles=encoded.n_battles,
        rows=rows,
        models=encoded.models,
        intervals=intervals,
        style_coefficients=coefficients,
    )
    return board if fragile is None else with_fragility(board, fragile)


@cache
def warm_compiled_kernels() -> None:
    """Compile, or load from numba's disk cache, every compiled loop a leaderboard recompute
    runs (online Elo, the bootstrap's draws and refits), on a few battles: once per process.

    The recompute calls it before it takes its job lock. Loading takes about a second, and
    compiling after an install takes tens of seconds on a busy machine.
    """
    pairs = [("a", "b"), ("b", "c"), ("a", "c")]
    outcomes = ["model_a", "model_b", "tie"]
    rows = [(x, y, w) for x, y in pairs for w in outcomes for _ in range(4)]
    battles = pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])
    compute_leaderboard(battles, bootstrap_rounds=2, seed=0, fragility=False)
    compute_leaderboard(battles, method="elo")
