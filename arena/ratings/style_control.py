"""Style-controlled Bradley-Terry: ratings net of answer length and Markdown, with intervals.

The model (FastChat's `fit_contextual_bt`, arena-rank's `ContextualBradleyTerry`; DESIGN section 7):
for battle i between models a and b, with raw style counts A_ie and B_ie of element e on each side,

    d_ie = (A_ie - B_ie) / (A_ie + B_ie + 1),   f_ie = (d_ie - mean_e) / sd_e   (over the battles)
    P(a beats b) = sigmoid(s_a - s_b + sum_e theta_e f_ie),   a tie scoring 1/2 each way,

s the strengths in natural-log units (rating = init + scale / ln(base) * s) and theta_e the change
in log-odds per standard deviation of element e's normalised difference. The fit minimises

    - sum_i c_i log-likelihood_i + 1/2 sum_j lambda_j phi_j^2,   phi = (s, theta),

where the battle weights c and the ridge lambda follow one of two conventions, named in every
output (CONVENTIONS):

  fastchat    c = 1; ridge (reg/2) |(beta, theta)|^2, reg = 0.5, with FastChat's beta = s / ln(base)
              (the summed log-likelihood of `compute_style_control`); strengths have mean 0
              because the ridge pulls them there.
  arena-rank  the mean weighted log-likelihood with a ridge (reg/2) |theta|^2, reg = 1.0, on the
              coefficients only (`ContextualBradleyTerry`): lambda = n reg on theta; strengths are
              fixed to mean 0, the gauge its solver lands on from zero.

The features are continuous, so the fit runs over battles, not pair counts; but Newton on a few
hundred parameters needs only X'WX and X'r: their model-side parts are sums per ordered pair (a
bincount into a table of a few thousand cells) and their feature parts a few dot products, all
taken in one pass over cache-sized blocks of battles.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import expit

from arena.ratings.battles import FloatArray, IntArray
from arena.ratings.bradley_terry import newton_strengths
from arena.ratings.elo import BASE, INIT_RATING, SCALE
from arena.ratings.errors import InvalidBattles, RatingsError

Convention = Literal["fastchat", "arena-rank"]
CONVENTIONS: Final[tuple[Convention, ...]] = ("fastchat", "arena-rank")
# FastChat's `reg` (halved from LogisticRegression's C = 1 because it no longer duplicates every
# battle) and arena-rank's ContextualBradleyTerry default `reg`.
DEFAULT_REG: Final[Mapping[Convention, float]] = {"fastchat": 0.5, "arena-rank": 1.0}
# The elements of FastChat's STYLE_CONTROL_ELEMENTS_V1, in its order; a dict-valued element of
# conv_metadata (headers h1-h6, ordered / unordered list items, ** / __ bold spans) is the sum
# of its values.
STYLE_ELEMENTS: Final[tuple[str, ...]] = ("tokens", "headers", "lists", "bold")
METADATA_KEYS: Final[Mapping[str, str]] = {
    "tokens": "sum_assistant_{side}_tokens",
    "headers": "header_count_{side}",
    "lists": "list_count_{side}",
    "bold": "bold_count_{side}",
}
# The battles table's numeric style columns: side a's elements, then side b's.
STYLE_COLUMNS: Final[tuple[str, ...]] = tuple(
    f"style_{side}_{element}" for side in ("a", "b") for element in STYLE_ELEMENTS
)
# Winner code (WINNERS order: model_a, model_b, tie, tie (bothbad)) -> score of side a.
_SCORE_A: Final = np.array([1.0, 0.0, 0.5, 0.5])
# arena-rank's `min_pair_count` for reweighting.
_REWEIGHT_MIN_PAIR_COUNT: Final = 50
# Newton stops after a full step that moved no parameter by more than this (natural-log units,
# about 2e-5 rating points); the error left is of the order of its square.
NEWTON_TOL: Final = 1e-7
NEWTON_MAX_ITER: Final = 100
_TRUSTED_LOGIT_STEP: Final = 0.5
_MAX_HALVINGS: Final = 40
# Steps below this reuse the last Hessian while each shrinks at least by _CHORD_RATIO.
_CHORD_FROM: Final = 1e-3
_CHORD_RATIO: Final = 0.25
_BOOTSTRAP_CHORD_MAX_ITER: Final = 30
# Bootstrap refits stop at a step below this: an error of at most 3.3e-6 natural-log units, or
# 6e-4 rating points, far inside the Monte Carlo noise of any quantile of 100 rounds.
BOOTSTRAP_TOL: Final = 1e-5

Progress = Callable[[int, int], None]


def normalised_differences(style_a: FloatArray, style_b: FloatArray) -> FloatArray:
    """(a - b) / (a + b + 1) elementwise: FastChat's `add_one` ratio, in (-1, 1) for counts."""
    a = np.asarray(style_a, dtype=np.float64)
    b = np.asarray(style_b, dtype=np.float64)
    return np.asarray((a - b) / (a + b + 1.0), dtype=np.float64)


# Battles per block in StyleBattles.score_at: a block's data and temporaries (about 80 bytes a
# battle, 2.6 MB) stay in cache between the steps, while numpy's per-call cost stays small.
_CACHE_BLOCK: Final = 1 << 15
# Ordered pairs are numbered through a dense models^2 lookup up to this many cells (a 128 MiB
# table of int64 at most), by sorting beyond.
_DENSE_PAIR_CELLS: Final = 1 << 24


class StyleBattles:
    """The battles of one style fit, as the sums of every Newton step need them.

    Holds per battle its ordered pair's number (model_a, model_b), the side-a score y, the weight
    c and the standardised features, stored as elements x battles so that each element's row is
    contiguous; `feature_mean` and `feature_sd` are those of the normalised differences
    (population sd; an element that never varies gets an all-zero feature, sd reported as 0, and
    so a zero coefficient). With x_i = (e_a - e_b, f_i): `score(v)` is sum_i v_i x_i, `score_at`
    the likelihood's gradient and `sums_at` the gradient with a Gram matrix sum_i v_i x_i x_i^T.
    Model-side sums are bincounts over the few thousand ordered pairs
    (a table that stays in cache), so nothing is sorted or gathered at random over the battles.
    """

    def __init__(
        self,
        a: IntArray,
        b: IntArray,
        score_a: FloatArray,
        style_a: FloatArray,
        style_b: FloatArray,
        weights: FloatArray | None,
        n_models: int,
    ) -> None:
        m = n_models
        key = a.astype(np.int64) * m + b.astype(np.int64)
        if m * m <= _DENSE_PAIR_CELLS:
            present = np.bincount(key, minlength=m * m) > 0
            keys = np.flatnonzero(present)
            number = np.zeros(m * m, dtype=np.int64)
            number[keys] = np.arange(keys.shape[0])
            self.pair = number[key]
        else:
            keys, self.pair = np.unique(key, return_inverse=True)
        self.n_pairs = int(keys.shape[0])
        self.pa = keys // m
        self.pb = keys % m
        self.n_models = m
        self.n_features = k = int(style_a.shape[1])
        self.n_battles = n = int(key.shape[0])
        self.y = np.asarray(score_a, dtype=np.float64)
        self.c = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        self.unit_weights = weights is None
        # Elements x battles, each element's row contiguous; built in new arrays, so the
        # caller's stay as they were.
        self.f = np.array(style_a.T, dtype=np.float64)
        total = np.array(style_b.T, dtype=np.float64)
        self.f -= total
        total += style_a.T
        total += 1.0
        self.f /= total
        del total
        self.feature_mean = self.f.mean(axis=1) if n else np.zeros(k)
        self.f -= self.feature_mean[:, None]
        self.feature_sd = np.sqrt(np.einsum("ij,ij->i", self.f, self.f) / max(n, 1))
        varies = self.feature_sd > 0
        self.f[varies] /= self.feature_sd[varies, None]
        self.f[~varies] = 0.0
        # Largest |f_ie|, to bound how far a step moves any battle's logit.
        self.max_abs_f = float(np.abs(self.f).max()) if self.f.size else 0.0

    @property
    def n_params(self) -> int:
        return self.n_models + self.n_features

    def logits(self, phi: FloatArray) -> FloatArray:
        m = self.n_models
        pair_logit = phi[:m][self.pa] - phi[:m][self.pb]
        eta = pair_logit[self.pair]
        if self.n_features:
            eta += phi[m:] @ self.f
        return np.asarray(eta, dtype=np.float64)

    def per_pair(self, values: FloatArray) -> FloatArray:
        return np.asarray(np.bincount(self.pair, values, self.n_pairs), dtype=np.float64)

    @cached_property
    def single(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The features and scores in single precision, for score_at(single=True)."""
        return self.f.astype(np.float32), self.y.astype(np.float32)

    def score_at(self, phi: FloatArray, weights: FloatArray, *, single: bool = False) -> FloatArray:
        """sum_i weights_i (y_i - p_i) x_i with p_i the probability at `phi`: the likelihood's
        gradient. Computed in blocks of battles small enough for the cache, so that each
        battle's data are read from memory once. With `single`, each block's probabilities and
        residuals are computed in single precision (sums in double): twice the speed, and an
        error of about 1e-7 per battle, random in sign, which moves an optimum by about 2e-7
        natural-log units (4e-5 rating points) on two million battles: for bootstrap rounds,
        which stop above that."""
        m = self.n_models
        pair_logit: npt.NDArray[Any] = phi[:m][self.pa] - phi[:m][self.pb]
        theta: npt.NDArray[Any] = phi[m:]
        f: npt.NDArray[Any] = self.f
        y: npt.NDArray[Any] = self.y
        if single:
            f, y = self.single
            pair_logit = pair_logit.astype(np.float32)
            theta = theta.astype(np.float32)
            weights = weights.astype(np.float32)
        per_pair = np.zeros(self.n_pairs)
        out = np.empty(self.n_params)
        out[m:] = 0.0
        block = min(_CACHE_BLOCK, self.n_battles)
        eta = np.empty(block, dtype=pair_logit.dtype)
        for start in range(0, self.n_battles, block):
            stop = min(start + block, self.n_battles)
            size = stop - start
            pairs = self.pair[start:stop]
            logit = eta[:size]
            np.take(pair_logit, pairs, out=logit)
            if self.n_features:
                logit += theta @ f[:, start:stop]
            expit(logit, out=logit)
            np.subtract(y[start:stop], logit, out=logit)
            logit *= weights[start:stop]
            per_pair += np.bincount(pairs, logit, self.n_pairs)
            if self.n_features:
                out[m:] += f[:, start:stop] @ logit
        out[:m] = np.bincount(self.pa, per_pair, m) - np.bincount(self.pb, per_pair, m)
        return out

    def score(self, values: FloatArray, *, single: bool = False) -> FloatArray:
        """sum_i values_i x_i: per-model (side a minus side b) sums, then the feature sums
        (with `single`, as score_at: the features in single precision)."""
        m = self.n_models
        per_pair = self.per_pair(values)
        out = np.empty(self.n_params)
        out[:m] = np.bincount(self.pa, per_pair, m) - np.bincount(self.pb, per_pair, m)
        out[m:] = self.single[0] @ values.astype(np.float32) if single else self.f @ values
        return out

    def _assemble_gram(
        self, per_pair: FloatArray, cross_pair: FloatArray, features: FloatArray
    ) -> FloatArray:
        m, k = self.n_models, self.n_features
        out = np.zeros((m + k, m + k))
        ss = out[:m, :m]
        np.add.at(ss, (self.pa, self.pb), -per_pair)
        np.add.at(ss, (self.pb, self.pa), -per_pair)
        ss[np.diag_indices(m)] += np.bincount(self.pa, per_pair, m) + np.bincount(
            self.pb, per_pair, m
        )
        if k:
            cross = np.empty((k, m))
            for e in range(k):
                cross[e] = np.bincount(self.pa, cross_pair[e], m) - np.bincount(
                    self.pb, cross_pair[e], m
                )
            out[m:, :m] = cross
            out[:m, m:] = cross.T
            out[m:, m:] = features
        return out

    def sums_at(
        self, phi: FloatArray, weights: FloatArray, *, squared_scores: bool = False
    ) -> tuple[FloatArray, FloatArray, FloatArray | None]:
        """At `phi`: the likelihood's gradient sum_i w_i (y_i - p_i) x_i, the Gram matrix
        sum_i v_i x_i x_i^T of the curvature v = w p (1 - p), and with `squared_scores` that of
        the squared scores v = (w (y - p))^2 (else None). One pass in cache-sized blocks."""
        m, k = self.n_models, self.n_features
        pair_logit = phi[:m][self.pa] - phi[:m][self.pb]
        theta = phi[m:]
        kinds = 2 if squared_scores else 1
        residual_pair = np.zeros(self.n_pairs)
        value_pair = np.zeros((kinds, self.n_pairs))
        cross_pair = np.zeros((kinds, k, self.n_pairs))
        features = np.zeros((kinds, k, k))
        feature_score = np.zeros(k)
        block = min(_CACHE_BLOCK, self.n_battles)
        for start in range(0, self.n_battles, block):
            stop = min(start + block, self.n_battles)
            pairs = self.pair[start:stop]
            f = self.f[:, start:stop]
            p = pair_logit[pairs]
            if k:
                p += theta @ f
            expit(p, out=p)
            w = weights[start:stop]
            residual = self.y[start:stop] - p
            residual *= w
            curvature = w * p
            curvature *= 1.0 - p
            values = [curvature, residual * residual] if squared_scores else [curvature]
            residual_pair += np.bincount(pairs, residual, self.n_pairs)
            if k:
                feature_score += f @ residual
            for kind, value in enumerate(values):
                value_pair[kind] += np.bincount(pairs, value, self.n_pairs)
                if k:
                    weighted = f * value
                    for e in range(k):
                        cross_pair[kind, e] += np.bincount(pairs, weighted[e], self.n_pairs)
                    features[kind] += weighted @ f.T
        gradient = np.empty(self.n_params)
        gradient[:m] = np.bincount(self.pa, residual_pair, m) - np.bincount(
            self.pb, residual_pair, m
        )
        gradient[m:] = feature_score
        grams = [
            self._assemble_gram(value_pair[kind], cross_pair[kind], features[kind])
            for kind in range(kinds)
        ]
        return gradient, grams[0], grams[1] if squared_scores else None

    def negative_log_likelihood(self, eta: FloatArray, counts: FloatArray | None = None) -> float:
        c = self.c if counts is None else self.c * counts
        return float(np.dot(c, np.logaddexp(0.0, eta) - self.y * eta))

    def pair_logit_bound(self, step: FloatArray) -> float:
        """An upper bound on max_i |change of battle i's logit| for a parameter step."""
        m = self.n_models
        pair = np.abs(step[:m][self.pa] - step[:m][self.pb]).max(initial=0.0)
        return float(pair + self.max_abs_f * np.abs(step[m:]).sum())


def _ridge(
    convention: Convention, reg: float, n_models: int, k: int, n: int, base: float
) -> FloatArray:
    if convention == "fastchat":
        # FastChat penalises beta = s / ln(base): (reg/2) beta^2 = (reg / ln(base)^2 / 2) s^2.
        return np.concatenate([np.full(n_models, reg / math.log(base) ** 2), np.full(k, reg)])
    return np.concatenate([np.zeros(n_models), np.full(k, reg * n)])


def _hessian(data: StyleBattles, ridge: FloatArray, gram: FloatArray) -> FloatArray:
    hessian = gram
    hessian[np.diag_indices_from(hessian)] += ridge
    m = data.n_models
    if not ridge[:m].any():
        # No ridge on the strengths: "all strengths up by one" is a null direction. Adding a
        # multiple of its outer product removes it and keeps the strengths' mean where it was
        # (the gradient has no component along it).
        scale = max(float(np.trace(hessian[:m, :m])), 1e-300) / (m * m)
        hessian[:m, :m] += scale
    return hessian


def _solve(hessian: FloatArray, gradient: FloatArray) -> FloatArray:
    try:
        return np.asarray(np.linalg.solve(hessian, gradient), dtype=np.float64)
    except np.linalg.LinAlgError as exc:
        raise RatingsError(
            "the style-control Hessian is singular: some model may never have won or never"
            " lost; check the battles with check_ratings_exist."
        ) from exc


def newton_style(
    data: StyleBattles,
    ridge: FloatArray,
    start: FloatArray,
    *,
    counts: FloatArray | None = None,
    tol: float = NEWTON_TOL,
    max_iter: int = NEWTON_MAX_ITER,
) -> tuple[FloatArray, int]:
    """Minimise -sum c_i n_i loglik_i + 1/2 sum ridge_j phi_j^2 by Newton from `start`.

    `counts` (per battle) multiplies the weights, as a bootstrap resample does. A step that would
    raise the objective is halved; it is only checked when it moves some battle's logit by more
    than 0.5, inside which a Newton step on the logistic likelihood always goes downhill. Once a
    step is below _CHORD_FROM the Hessian is kept (chord steps: the gradient alone, which costs
    a third of a full step), as long as each step shrinks at least fourfold; the error left when
    a step falls below `tol` is then at most a third of that step. Returns the parameters and the
    iterations used.
    """
    phi = np.array(start, dtype=np.float64, copy=True)
    c = data.c if counts is None else data.c * counts
    hessian: FloatArray | None = None
    previous = math.inf
    for iteration in range(1, max_iter + 1):
        if hessian is None:
            gradient, gram, _ = data.sums_at(phi, c)
            hessian = _hessian(data, ridge, gram)
        else:
            gradient = data.score_at(phi, c)
        gradient -= ridge * phi
        step = _solve(hessian, gradient)
        size = float(np.abs(step).max())
        if previous < _CHORD_FROM and size > _CHORD_RATIO * previous:
            # The kept Hessian is too far off: take a full Newton step instead.
            _, gram, _ = data.sums_at(phi, c)
            hessian = _hessian(data, ridge, gram)
            step = _solve(hessian, gradient)
            size = float(np.abs(step).max())
        factor = 1.0
        if data.pair_logit_bound(step) > _TRUSTED_LOGIT_STEP:
            eta = data.logits(phi)
            before = data.negative_log_likelihood(eta, counts) + 0.5 * float(ridge @ phi**2)
            for _ in range(_MAX_HALVINGS):
                trial = phi + factor * step
                after = data.negative_log_likelihood(data.logits(trial), counts) + 0.5 * float(
                    ridge @ trial**2
                )
                if after <= before + 1e-13 * max(1.0, abs(before)):
                    break
                factor *= 0.5
        phi += factor * step
        if factor == 1.0 and size < tol:
            return phi, iteration
        previous = size if factor == 1.0 else math.inf
        if previous >= _CHORD_FROM:
            hessian = None
    raise RatingsError(f"the style-control fit did not converge in {max_iter} Newton iterations.")


def _bradley_terry_start(data: StyleBattles) -> FloatArray:
    """Plain Bradley-Terry strengths on the pair sums (coefficients 0): a start a Newton step
    or two from the answer. Zeros when those strengths do not exist."""
    m = data.n_models
    start = np.zeros(data.n_params)
    wins_a = data.per_pair(data.c * data.y)
    totals = data.per_pair(data.c)
    lo, hi = np.minimum(data.pa, data.pb), np.maximum(data.pa, data.pb)
    wins_lo = np.where(data.pa == lo, wins_a, totals - wins_a)
    pairs, pair_of = np.unique(lo * m + hi, return_inverse=True)
    wins = np.asarray(np.bincount(pair_of, wins_lo, pairs.shape[0]), dtype=np.float64)
    total = np.asarray(np.bincount(pair_of, totals, pairs.shape[0]), dtype=np.float64)
    try:
        strengths, _ = newton_strengths(
            pairs // m, pairs % m, wins[None, :], total[None, :], np.zeros((1, m))
        )
    except RatingsError:
        return start
    if np.isfinite(strengths).all() and np.abs(strengths).max() < 50:
        start[:m] = strengths[0]
    return start


@dataclass(frozen=True)
class StyleControlFit:
    """The fitted strengths (natural-log units, mean 0) and coefficients (log-odds per sd).

    `feature_mean` and `feature_sd` are those of the normalised differences the features were
    standardised with; `data` holds the prepared battles for intervals and the bootstrap.
    """

    models: tuple[str, ...]
    elements: tuple[str, ...]
    strengths: FloatArray
    coefficients: FloatArray
    feature_mean: FloatArray
    feature_sd: FloatArray
    convention: Convention
    reg: float
    reweighted: bool
    scale: float
    base: float
    init: float
    iterations: int
    data: StyleBattles = field(repr=False, compare=False)

    @property
    def points_per_unit(self) -> float:
        """Rating points per natural-log unit of strength: scale / ln(base), 173.7 by default."""
        return self.scale / math.log(self.base)

    @property
    def ratings(self) -> FloatArray:
        return np.asarray(self.init + self.points_per_unit * self.strengths, dtype=np.float64)

    @property
    def params(self) -> FloatArray:
        return np.concatenate([self.strengths, self.coefficients])

    @property
    def ridge(self) -> FloatArray:
        return _ridge(
            self.convention,
            self.reg,
            len(self.models),
            len(self.elements),
            self.data.n_battles,
            self.base,
        )

    def as_series(self) -> pd.Series:
        return pd.Series(self.ratings, index=pd.Index(self.models, name="model"), name="rating")


def _pair_weights(a: IntArray, b: IntArray, n_models: int) -> FloatArray:
    # arena-rank's contextual reweighting: 1 / max(battles of the unordered pair, 50), scaled to
    # mean 1 over the battles.
    pair = np.minimum(a, b) * n_models + np.maximum(a, b)
    _, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)
    weights = 1.0 / np.maximum(counts[inverse].astype(np.float64), _REWEIGHT_MIN_PAIR_COUNT)
    return np.asarray(weights / weights.mean(), dtype=np.float64)


def fit_style_control(
    a: IntArray,
    b: IntArray,
    outcome: IntArray,
    style_a: FloatArray,
    style_b: FloatArray,
    *,
    models: Sequence[str],
    elements: Sequence[str] = STYLE_ELEMENTS,
    convention: Convention = "fastchat",
    reg: float | None = None,
    reweighted: bool = False,
    scale: float = SCALE,
    base: float = BASE,
    init: float = INIT_RATING,
) -> StyleControlFit:
    """Fit style-controlled Bradley-Terry to rounding precision (see the module docstring).

    `a`, `b` index `models` per battle; `outcome` indexes WINNERS (model_a, model_b, tie,
    tie (bothbad)), both ties scoring 1/2 as FastChat's; `style_a`, `style_b` are the raw
    per-side counts (battles x elements, in `elements` order, STYLE_ELEMENTS by default).
    `reg` defaults to the convention's (0.5 FastChat, 1.0 arena-rank); `reweighted` weighs each
    battle by 1 / max(its pair's battles, 50), scaled to mean 1, as arena-rank can.
    """
    if convention not in CONVENTIONS:
        raise InvalidBattles(
            f"convention must be one of {', '.join(CONVENTIONS)}; got {convention!r}."
        )
    n_models = len(models)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    outcome = np.asarray(outcome, dtype=np.int64)
    style_a = np.asarray(style_a)
    style_b = np.asarray(style_b)
    n = a.shape[0]
    k = len(elements)
    if n == 0:
        raise InvalidBattles("there are no battles to rate.")
    if style_a.shape != (n, k) or style_b.shape != (n, k):
        raise InvalidBattles(
            f"style features must be (battles x elements) = ({n} x {k}) per side;"
            f" got {style_a.shape} and {style_b.shape}."
        )
    if not (np.isfinite(style_a).all() and np.isfinite(style_b).all()):
        raise InvalidBattles("style features must be finite numbers; drop battles without them.")
    if (style_a < 0).any() or (style_b < 0).any():
        raise InvalidBattles("style features are counts and cannot be negative.")
    reg_value = DEFAULT_REG[convention] if reg is None else float(reg)
    if not math.isfinite(reg_value) or reg_value < 0:
        raise InvalidBattles(f"reg must be a finite number >= 0; got {reg}.")
    weights = _pair_weights(a, b, n_models) if reweighted else None
    data = StyleBattles(a, b, _SCORE_A[outcome], style_a, style_b, weights, n_models)
    ridge = _ridge(convention, reg_value, n_models, k, n, base)
    phi, iterations = newton_style(data, ridge, _bradley_terry_start(data))
    return StyleControlFit(
        models=tuple(models),
        elements=tuple(elements),
        strengths=phi[:n_models],
        coefficients=phi[n_models:],
        feature_mean=data.feature_mean,
        feature_sd=data.feature_sd,
        convention=convention,
        reg=reg_value,
        reweighted=reweighted,
        scale=float(scale),
        base=float(base),
        init=float(init),
        iterations=iterations,
        data=data,
    )


def style_sandwich_covariance(fit: StyleControlFit, *, ridge: float) -> FloatArray:
    """Covariance of (strengths, coefficients) by arena-rank's sandwich estimator.

    In summed units, with x_i = (e_a - e_b, f_i), p_i the fitted probability and n battles:
    H = sum c p (1 - p) x x^T + ridge n I (the likelihood's curvature only, as arena-rank),
    G = sum (c (y - p))^2 x x^T - g g^T / n^2 with g the ridge's gradient (arena-rank's
    correction for it), covariance H^-1 G H^-1.
    """
    data = fit.data
    m = data.n_models
    phi = fit.params
    _, hessian, squared_scores = data.sums_at(phi, data.c, squared_scores=True)
    if squared_scores is None:
        raise ValueError("sums_at gave no squared scores")
    hessian[np.diag_indices_from(hessian)] += ridge * data.n_battles
    penalty_gradient = fit.ridge * phi
    gradient_cov = (
        squared_scores - np.outer(penalty_gradient, penalty_gradient) / float(data.n_battles) ** 2
    )
    # As for plain Bradley-Terry (intervals.sandwich_covariance): "all strengths up by one" is an
    # eigenvector of H (the likelihood ignores it) and G annihilates it (the ridge's gradient too:
    # the strengths have mean 0), so adding a multiple of its outer product to H changes nothing
    # in exact arithmetic and keeps rounding in G from being multiplied by 1 / ridge^2 along it.
    hessian[:m, :m] += max(float(np.trace(hessian[:m, :m])), 1e-300) / (m * m)
    inverse = np.linalg.inv(hessian)
    return np.asarray(inverse @ gradient_cov @ inverse, dtype=np.float64)


def refit_near(
    data: StyleBattles,
    ridge: FloatArray,
    start: FloatArray,
    start_residual: FloatArray,
    hessian_inverse: FloatArray,
    counts: FloatArray,
    *,
    tol: float = BOOTSTRAP_TOL,
) -> FloatArray:
    """The optimum for battle counts `counts`, from `start`, the optimum for the full data.

    `start_residual` is y - p at `start`. Chord steps with the full data's inverse Hessian: each
    costs one pass for the gradient and a matrix-vector product, the first not even that, since
    the probabilities at `start` are known. They converge linearly at a rate set by how far the
    resample's curvature is from the full data's (about 2% per step on two million battles); a
    first step that moves some logit by more than 0.5, or a step that does not shrink fourfold,
    hands over to newton_style from where it stands. The error left when a step falls below
    `tol` is at most a third of that step.
    """
    c = counts if data.unit_weights else data.c * counts
    step = hessian_inverse @ (data.score(c * start_residual, single=True) - ridge * start)
    if data.pair_logit_bound(step) > _TRUSTED_LOGIT_STEP:
        refined, _ = newton_style(data, ridge, start, counts=counts, tol=tol)
        return refined
    phi = start + step
    previous = float(np.abs(step).max())
    for _ in range(_BOOTSTRAP_CHORD_MAX_ITER):
        if previous < tol:
            return phi
        step = hessian_inverse @ (data.score_at(phi, c, single=True) - ridge * phi)
        size = float(np.abs(step).max())
        if size > _CHORD_RATIO * previous:
            break
        phi += step
        previous = size
    refined, _ = newton_style(data, ridge, phi, counts=counts, tol=tol)
    return refined


def resample_counts(rng: np.random.Generator, n: int) -> FloatArray:
    """How often each of n battles is drawn in n draws with replacement (multinomial, uniform).

    Drawn in two stages with the same law: the draws per block of battles (multinomial over the
    blocks, by size), then uniform positions within each block, so that counting them touches
    a cache-sized table instead of scattering over all n.
    """
    starts = np.arange(0, n, _CACHE_BLOCK)
    sizes = np.minimum(_CACHE_BLOCK, n - starts)
    per_block = rng.multinomial(n, sizes / n)
    counts = np.empty(n)
    for start, size, drawn in zip(starts.tolist(), sizes.tolist(), per_block.tolist(), strict=True):
        counts[start : start + size] = np.bincount(rng.integers(0, size, drawn), minlength=size)
    return counts


def bootstrap_style_control(
    fit: StyleControlFit,
    *,
    rounds: int,
    rng: np.random.Generator,
    progress: Progress | None = None,
) -> FloatArray:
    """(strengths, coefficients) refitted on `rounds` resamples of the battles: rounds x params.

    Each round draws the battles with replacement (resample_counts: the law of FastChat's
    resampled index arrays, as counts per battle), keeps the features of the full
    data as FastChat does, and moves from the full-data optimum to the resample's (refit_near),
    to rounding precision. Rounds run on two threads (numpy releases the GIL in its loops); each
    round has its own generator spawned from `rng`, so the result depends on the seed only.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1; got {rounds}.")
    data = fit.data
    n = data.n_battles
    ridge = fit.ridge
    start = fit.params
    p = expit(data.logits(start))
    start_residual = data.y - p
    hessian_inverse = np.asarray(
        np.linalg.inv(_hessian(data, ridge, data.sums_at(start, data.c)[1])), dtype=np.float64
    )
    round_rngs = rng.spawn(rounds)

    def one_round(r: int) -> FloatArray:
        counts = resample_counts(round_rngs[r], n)
        return refit_near(data, ridge, start, start_residual, hessian_inverse, counts)

    workers = max(1, min(2, os.cpu_count() or 1))
    samples = np.empty((rounds, data.n_params))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for r, phi in enumerate(pool.map(one_round, range(rounds))):
            samples[r] = phi
            if progress is not None:
                progress(r + 1, rounds)
    return samples


def _element_value(value: Any) -> float:
    if isinstance(value, Mapping):
        return float(sum(float(v) for v in value.values()))
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def metadata_values(metadata: Any) -> list[float]:
    """One conv_metadata dict's eight numbers in STYLE_COLUMNS order (NaN where missing); a
    JSON text (as a CSV cell holds it) is read first."""
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError:
            metadata = None
    if not isinstance(metadata, Mapping):
        return [math.nan] * len(STYLE_COLUMNS)
    return [
        _element_value(metadata.get(METADATA_KEYS[element].format(side=side)))
        for side in ("a", "b")
        for element in STYLE_ELEMENTS
    ]


def style_arrays(battles: pd.DataFrame) -> tuple[FloatArray, FloatArray]:
    """Side a's and side b's raw style counts (battles x STYLE_ELEMENTS) from a battles table.

    Read from the STYLE_COLUMNS (style_a_tokens, ..., style_b_bold) when the table has them,
    otherwise from FastChat's `conv_metadata` column of dicts; NaN marks a battle without them.
    """
    k = len(STYLE_ELEMENTS)
    if all(column in battles.columns for column in STYLE_COLUMNS):
        values = battles[list(STYLE_COLUMNS)]
        if not all(pd.api.types.is_numeric_dtype(t) for t in values.dtypes):
            values = values.apply(pd.to_numeric, errors="coerce")
        matrix = values.to_numpy(dtype=np.float64, na_value=np.nan)
    elif "conv_metadata" in battles.columns:
        rows = [metadata_values(m) for m in battles["conv_metadata"].tolist()]
        matrix = np.array(rows, dtype=np.float64).reshape(-1, 2 * k)
    else:
        raise InvalidBattles(
            "style control needs each battle's style: a conv_metadata column (FastChat's"
            f" clean-battle files) or the columns {', '.join(STYLE_COLUMNS)}."
        )
    return matrix[:, :k], matrix[:, k:]


@dataclass(frozen=True)
class StyleCoefficient:
    """One element's fitted effect: log-odds per standard deviation of its normalised difference,
    with its interval, and the sd and mean of that difference (to translate back to counts)."""

    element: str
    coefficient: float
    ci_lower: float | None
    ci_upper: float | None
    feature_mean: float
    feature_sd: float

    def to_json_dict(self, points_per_unit: float) -> dict[str, Any]:
        """The coefficient three ways: log-odds per sd; rating points (the rating gap with the
        same effect on the odds, coefficient * scale / ln(base)); and the odds ratio exp(coef),
        how much one sd more of the element multiplies the odds of winning."""

        def scaled(value: float | None, how: Callable[[float], float]) -> float | None:
            return None if value is None else how(value)

        def points(x: float) -> float:
            return x * points_per_unit

        return {
            "element": self.element,
            "coefficient": self.coefficient,
            "ci_lower": self.ci_lower,
            "ci_upper": self.ci_upper,
            "rating_points": points(self.coefficient),
            "rating_points_lower": scaled(self.ci_lower, points),
            "rating_points_upper": scaled(self.ci_upper, points),
            "odds_ratio": math.exp(self.coefficient),
            "odds_ratio_lower": scaled(self.ci_lower, math.exp),
            "odds_ratio_upper": scaled(self.ci_upper, math.exp),
            "feature_mean": self.feature_mean,
            "feature_sd": self.feature_sd,
        }


def style_coefficients(
    fit: StyleControlFit, lower: FloatArray | None, upper: FloatArray | None
) -> tuple[StyleCoefficient, ...]:
    """The fit's coefficients as rows, with interval bounds (log-odds per sd) when given."""
    return tuple(
        StyleCoefficient(
            element=element,
            coefficient=float(fit.coefficients[e]),
            ci_lower=None if lower is None else float(lower[e]),
            ci_upper=None if upper is None else float(upper[e]),
            feature_mean=float(fit.feature_mean[e]),
            feature_sd=float(fit.feature_sd[e]),
        )
        for e, element in enumerate(fit.elements)
    )
