"""Battles drawn from known Bradley-Terry strengths, for the rating tests and the benchmark."""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_battles(
    strengths: np.ndarray,
    n_battles: int,
    rng: np.random.Generator,
    *,
    tie_share: float = 0.0,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Battles between random pairs; the first side wins with probability sigmoid(s_a - s_b).

    Strengths are natural-log units (400 / ln 10 rating points each). A share of battles, drawn
    independently of strength, are ties (half of them 'tie (bothbad)'); such ties pull the fitted
    ratings together, so tests that recover strengths simulate none.
    """
    m = strengths.shape[0]
    labels = np.array(names if names is not None else [f"model-{i:02d}" for i in range(m)])
    a = rng.integers(0, m, n_battles)
    b = (a + rng.integers(1, m, n_battles)) % m
    p_a = 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
    decisive = np.where(rng.random(n_battles) < p_a, "model_a", "model_b")
    tie_draw = rng.random(n_battles)
    winner = np.where(
        tie_draw < tie_share / 2,
        "tie",
        np.where(tie_draw < tie_share, "tie (bothbad)", decisive),
    )
    return pd.DataFrame(
        {
            "model_a": labels[a],
            "model_b": labels[b],
            "winner": winner,
            "tstamp": 1.7e9 + np.arange(n_battles, dtype=np.float64),
        }
    )


def simulate_style_battles(
    strengths: np.ndarray,
    verbosity: np.ndarray,
    length_effect: float,
    n_battles: int,
    rng: np.random.Generator,
    *,
    tie_share: float = 0.0,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Battles whose outcome depends on the strengths and on answer length only.

    Model j answers with a Gamma(2, verbosity_j / 2) number of tokens (mean verbosity_j) and
    Poisson headers, list items and bold spans that do not affect the outcome. Side a wins with
    probability sigmoid(s_a - s_b + length_effect * f), f the standardised (a - b) / (a + b + 1)
    of the tokens. Returns the battles (with FastChat's conv_metadata dicts) and the raw style
    arrays of sides a and b (battles x [tokens, headers, lists, bold]).
    """
    m = strengths.shape[0]
    labels = np.array([f"model-{i:02d}" for i in range(m)])
    a = rng.integers(0, m, n_battles)
    b = (a + rng.integers(1, m, n_battles)) % m

    def side(models: np.ndarray) -> np.ndarray:
        tokens = np.rint(rng.gamma(2.0, verbosity[models] / 2.0))
        extras = rng.poisson([1.0, 3.0, 2.0], size=(models.shape[0], 3))
        return np.column_stack([tokens, extras]).astype(np.int64)

    style_a, style_b = side(a), side(b)
    ratio = (style_a[:, 0] - style_b[:, 0]) / (style_a[:, 0] + style_b[:, 0] + 1.0)
    feature = (ratio - ratio.mean()) / ratio.std()
    p_a = 1.0 / (1.0 + np.exp(-(strengths[a] - strengths[b] + length_effect * feature)))
    decisive = np.where(rng.random(n_battles) < p_a, "model_a", "model_b")
    winner = np.where(rng.random(n_battles) < tie_share, "tie", decisive)
    metadata = [
        {
            "sum_assistant_a_tokens": int(sa[0]),
            "header_count_a": {"h1": int(sa[1]), "h2": 0, "h3": 0, "h4": 0, "h5": 0, "h6": 0},
            "list_count_a": {"ordered": int(sa[2]), "unordered": 0},
            "bold_count_a": {"**": int(sa[3]), "__": 0},
            "sum_assistant_b_tokens": int(sb[0]),
            "header_count_b": {"h1": 0, "h2": int(sb[1]), "h3": 0, "h4": 0, "h5": 0, "h6": 0},
            "list_count_b": {"ordered": 0, "unordered": int(sb[2])},
            "bold_count_b": {"**": 0, "__": int(sb[3])},
        }
        for sa, sb in zip(style_a.tolist(), style_b.tolist(), strict=True)
    ]
    battles = pd.DataFrame(
        {
            "model_a": labels[a],
            "model_b": labels[b],
            "winner": winner,
            "tstamp": 1.7e9 + np.arange(n_battles, dtype=np.float64),
            "conv_metadata": metadata,
        }
    )
    return battles, style_a, style_b
