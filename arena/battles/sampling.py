"""Choosing which two models meet in a battle, and on which side each sits."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from arena.errors import NoModelsAvailable

T = TypeVar("T")

_rng = random.SystemRandom()  # visitors must not be able to predict the pairing


def draw_pair(candidates: Sequence[T], rng: random.Random = _rng) -> tuple[T, T]:
    """An unordered pair uniformly among all pairs, then sides at random: (side A, side B)."""
    if len(candidates) < 2:
        raise NoModelsAvailable()
    first, second = rng.sample(list(candidates), 2)
    return first, second
