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
