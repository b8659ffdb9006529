"""Pair weights, the new-model boost and the planned shares."""

from __future__ import annotations

import random
from collections import Counter
from itertools import combinations

import pytest
from cryptography.fernet import Fernet

from arena.battles.ratings_view import RatedModel, rated_models
from arena.battles.sampling import candidates_from, draw_pair, expected_shares
from arena.config import Settings
from arena.errors import NoModelsAvailable


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, secret_key=Fernet.generate_key().decode(), **values)  # type: ignore[call-arg]


def test_uniform_without_weights_covers_every_pair_and_both_sides() -> None:
    rng = random.Random(1)
    seen = Counter(draw_pair(["a", "b", "c"], rng) for _ in range(3000))
    assert set(seen) == {(x, y) for x in "abc" for y in "abc" if x != y}
    assert min(seen.values()) > 400  # 500 each expected


def test_pairs_follow_the_product_of_weights() -> None:
    rng = random.Random(7)
    names = ["a", "b", "c", "d"]
    weights = [1.0, 2.0, 3.0, 0.5]
    n = 60_000
    seen = Counter(frozenset(draw_pair(names, rng, weights)) for _ in range(n))
    z = sum(weights[i] * weights[j] for i, j in combinations(range(4), 2))
    for i, j in combinations(range(4), 2):
        expected = weights[i] * weights[j] / z
        observed = seen[frozenset((names[i], names[j]))] / n
        assert observed == pytest.approx(expected, abs=0.01)


def test_sides_are_random_with_weights() -> None:
    rng = random.Random(3)
    firsts = Counter(draw_pair(["heavy", "light"], rng, [10.0, 1.0])[0] for _ in range(4000))
    assert firsts["heavy"] == pytest.approx(2000, abs=200)


def test_zero_weight_is_never_drawn_and_too_few_is_an_error() -> None:
    rng = random.Random(5)
    drawn = {m for _ in range(500) for m in draw_pair(["a", "b", "c"], rng, [1.0, 0.0, 1.0])}
    assert drawn == {"a", "c"}
    with pytest.raises(NoModelsAvailable):
        draw_pair(["a", "b"], rng, [1.0, 0.0])
    with pytest.raises(NoModelsAvailable):
        draw_pair(["a"], rng)
    with pytest.raises(ValueError, match="2 weights for 3 candidates"):
        draw_pair(["a", "b", "c"], rng, [1.0, 1.0])


def test_expected_shares_match_the_draws() -> None:
    weights = [1.0, 2.0, 3.0, 0.5]
    shares = expected_shares(weights)
    assert sum(shares) == pytest.approx(1.0)
    rng = random.Random(11)
    n = 40_000
    slots = Counter(m for _ in range(n) for m in draw_pair(range(4), rng, weights))
    for i, share in enumerate(shares):
        assert slots[i] / (2 * n) == pytest.approx(share, abs=0.01)
    assert expected_shares([1.0, 1.0]) == [0.5, 0.5]
    assert expected_shares([1.0]) == [0.0]


def test_new_models_are_boosted_until_their_vote_target() -> None:
    settings = _settings(new_model_vote_target=100, new_model_boost=4.0)
    rated = {"old": RatedModel(1100.0, 5000), "young": RatedModel(990.0, 99)}
    made = candidates_from(
        [(1, "old", 1.0), (2, "young", 1.0), (3, "brand-new", 0.5), (4, "off", 0.0)],
        rated,
        settings,
    )
    assert [(c.name, c.boosted, c.weight) for c in made] == [
        ("old", False, 1.0),
        ("young", True, 4.0),
        ("brand-new", True, 2.0),
        ("off", False, 0.0),
    ]
    no_boost = candidates_from([(2, "young", 1.0)], rated, _settings(new_model_vote_target=0))
    assert no_boost[0].weight == 1.0 and not no_boost[0].boosted


def test_snapshot_rows_are_read_defensively() -> None:
    rows = [
        {"model": "a", "rating": 1010.5, "votes": 12, "rank": 1},
        {"model": "b", "rating": None, "votes": 3},
        "not a row",
        {"model": "c", "rating": 990},
    ]
    assert rated_models(rows) == {"a": RatedModel(1010.5, 12), "c": RatedModel(990.0, 0)}
