"""A re-implementation of FastChat's style control, the baseline of bench/ratings.py.

FastChat (fastchat/serve/monitor/rating_systems.py: preprocess_for_style, fit_contextual_bt,
compute_style_control, compute_bootstrap_style_control) cannot be installed here, so its
algorithm is rewritten from its description, step for step: the raw style counts per side,
(a - b) / (a + b + 1) per element, standardised with the population sd; then scipy's L-BFGS-B
from zero on the summed negative log-likelihood of sigmoid(ln(10) (beta_a - beta_b) + theta . f)
plus (reg/2) |(beta, theta)|^2 with reg = 0.5, its gradient accumulated with np.add.at, at most
`max_iter` iterations (FastChat: 100) to gradient tolerance `tol` (FastChat: 1e-6); ratings
400 beta + 1000. Its bootstrap draws n row indices with replacement per round and refits each
round from zero on the full data's features (FastChat runs the rounds in a process pool).

This is not our code path: it is what our fit is measured against, for time and for agreement.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

SIDE_SIGNS = np.array([1.0, -1.0])


def fastchat_features(style_a: np.ndarray, style_b: np.ndarray) -> np.ndarray:
    """preprocess_for_style with apply_ratio all ones and add_one: battles x elements."""
    diff = (style_a - style_b).astype(float)
    total = (style_a + style_b).astype(float) + 1.0
    ratio = diff / total
    return np.asarray((ratio - ratio.mean(axis=0)) / ratio.std(axis=0))


def loss_and_gradient(
    params: np.ndarray,
    n_models: int,
    matchups: np.ndarray,
    features: np.ndarray,
    outcomes: np.ndarray,
    alpha: float,
    reg: float,
) -> tuple[float, np.ndarray]:
    """contextual_bt_loss_and_grad: summed log loss plus (reg/2) |params|^2, and its gradient."""
    ratings, coefficients = params[:n_models], params[n_models:]
    pair = ratings[matchups]
    probs = expit(alpha * (pair[:, 0] - pair[:, 1]) + features @ coefficients)
    loss = -np.sum(np.log(probs) * outcomes + np.log(1.0 - probs) * (1.0 - outcomes))
    loss += 0.5 * reg * float(params @ params)
    error = outcomes - probs
    gradient = reg * params
    np.add.at(gradient[:n_models], matchups, (-alpha * error)[:, None] * SIDE_SIGNS)
    gradient[n_models:] -= features.T @ error
    return float(loss), gradient


def fit_contextual_bt(
    matchups: np.ndarray,
    features: np.ndarray,
    outcomes: np.ndarray,
    n_models: int,
    *,
    idxs: np.ndarray | None = None,
    alpha: float = math.log(10.0),
    reg: float = 0.5,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> np.ndarray:
    """L-BFGS-B from zero; `idxs` selects the rows of a bootstrap round. Returns (beta, theta)."""
    if idxs is not None:
        matchups, features, outcomes = matchups[idxs], features[idxs], outcomes[idxs]
    result = minimize(
        loss_and_gradient,
        np.zeros(n_models + features.shape[1]),
        args=(n_models, matchups, features, outcomes, alpha, reg),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol},
    )
    return np.asarray(result.x)


def compute_style_control(
    matchups: np.ndarray,
    style_a: np.ndarray,
    style_b: np.ndarray,
    outcomes: np.ndarray,
    n_models: int,
    *,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Ratings (400 beta + 1000) and coefficients, as compute_style_control without an anchor."""
    features = fastchat_features(style_a, style_b)
    params = fit_contextual_bt(matchups, features, outcomes, n_models, tol=tol, max_iter=max_iter)
    return 400.0 * params[:n_models] + 1000.0, params[n_models:]


def compute_bootstrap_style_control(
    matchups: np.ndarray,
    style_a: np.ndarray,
    style_b: np.ndarray,
    outcomes: np.ndarray,
    n_models: int,
    rounds: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Ratings (rounds x models) and coefficients of `rounds` resamples, one after another."""
    features = fastchat_features(style_a, style_b)
    n = matchups.shape[0]
    results = [
        fit_contextual_bt(matchups, features, outcomes, n_models, idxs=rng.integers(0, n, n))
        for _ in range(rounds)
    ]
    params = np.array(results)
    return 400.0 * params[:, :n_models] + 1000.0, params[:, n_models:]
