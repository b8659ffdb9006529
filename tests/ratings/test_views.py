"""Views: which battles each exclusion leaves out, view keys, and coded subsets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arena.ratings import InvalidBattles, compute_leaderboard, encode_battles, vote_set_hash
from arena.ratings.subsets import CodedBattles
from arena.ratings.views import (
    available_exclusions,
    exclusion_mask,
    keeps_duplicates,
    stored_views,
    view_exclusions,
    view_key,
    view_mask,
    view_params,
)

BATTLES = pd.DataFrame(
    {
        "vote_id": [7, 12, 3, 40, 5, 9],
        "model_a": ["A", "B", "C", "A", "B", "D"],
        "model_b": ["B", "C", "A", "C", "A", "A"],
        "winner": ["model_a", "tie", "model_b", "tie (bothbad)", "model_b", "model_a"],
        "tstamp": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "prompt_tokens": [1, 30, 4, np.nan, 5, 12],
    }
)


def test_view_keys_are_ordered_and_checked() -> None:
    assert view_key(["short", "ties"]) == view_key(["ties", "short"]) == "ties+short"
    assert view_key([]) == "" and view_exclusions("") == ()
    assert view_exclusions("short+ties") == ("ties", "short")
    with pytest.raises(InvalidBattles, match="'draws'"):
        view_key(["ties", "draws"])


def test_each_exclusion_leaves_out_its_battles() -> None:
    ties = exclusion_mask(BATTLES, "ties")
    assert ties.tolist() == [False, True, False, True, False, False]
    # Fewer than 5 tokens is short; a battle never measured (NaN) stays in.
    short = exclusion_mask(BATTLES, "short", min_prompt_tokens=5)
    assert short.tolist() == [True, False, True, False, False, False]
    assert exclusion_mask(BATTLES, "short", min_prompt_tokens=13).tolist() == [
        True, False, True, False, True, True,
    ]  # fmt: skip
    assert view_mask(BATTLES, "ties+short").tolist() == [False, False, False, False, True, True]


def test_short_prompts_from_the_text_when_lengths_are_not_stored() -> None:
    texts = BATTLES.drop(columns="prompt_tokens").assign(
        prompt=["hi", "x" * 40, "", "a", "abcd" * 3, "?"]
    )
    assert exclusion_mask(texts, "short", min_prompt_tokens=2).tolist() == [
        True, False, True, True, False, True,
    ]  # fmt: skip


def test_refusals_need_a_marker_and_follow_it() -> None:
    assert available_exclusions(BATTLES) == ("ties", "short")
    with pytest.raises(InvalidBattles, match="refusal"):
        exclusion_mask(BATTLES, "refusals")
    marked = BATTLES.assign(refusal=[False, True, None, False, True, False])
    assert available_exclusions(marked) == ("ties", "short", "refusals")
    assert exclusion_mask(marked, "refusals").tolist() == [False, True, False, False, True, False]
    assert len(stored_views(marked)) == 8 and stored_views(marked)[0] == ""


def test_stored_views_are_every_combination_plain_first() -> None:
    assert stored_views(BATTLES) == ("", "short", "ties", "ties+short")
    assert stored_views(BATTLES[["model_a", "model_b", "winner"]]) == ("", "ties")


def test_held_back_duplicates_are_rated_only_where_a_view_keeps_them() -> None:
    held = BATTLES.assign(duplicate=[False, False, True, False, None, True])
    assert view_key(["ties"], keep_duplicates=True) == "ties+duplicates"
    assert view_key([], keep_duplicates=True) == "duplicates"
    assert view_exclusions("ties+duplicates") == ("ties",)
    assert keeps_duplicates("short+duplicates") and not keeps_duplicates("short")
    assert view_mask(held, "").tolist() == [True, True, False, True, True, False]
    assert view_mask(held, "duplicates").tolist() == [True] * 6
    assert view_mask(held, "ties+duplicates").tolist() == [True, False, True, False, True, True]
    # Each view once more keeping them, but only when the table holds some.
    assert stored_views(held) == (
        "", "duplicates", "short", "ties", "short+duplicates", "ties+duplicates",
        "ties+short", "ties+short+duplicates",
    )  # fmt: skip
    assert stored_views(held.assign(duplicate=False)) == stored_views(BATTLES)
    assert view_params("duplicates", min_prompt_tokens=5) == {
        "view": "duplicates",
        "keep_duplicates": True,
    }
    assert view_params("short+duplicates", min_prompt_tokens=7) == {
        "view": "short+duplicates",
        "exclusions": ["short"],
        "min_prompt_tokens": 7,
        "keep_duplicates": True,
    }
    with pytest.raises(InvalidBattles, match="'duplicates'"):
        view_key(["duplicates"])  # not an exclusion: keep_duplicates says it


@pytest.mark.parametrize("with_ids", [True, False])
def test_a_coded_subset_is_coded_and_hashed_as_the_subset_alone(with_ids: bool) -> None:
    rng = np.random.default_rng(4)
    n = 3000
    names = np.array(["m-a", "m-b", "m-c", "m-d", "m-e"], dtype=object)
    a = rng.integers(0, 5, n)
    b = (a + rng.integers(1, 5, n)) % 5
    winners = np.array(["model_a", "model_b", "tie", "tie (bothbad)"], dtype=object)
    battles = pd.DataFrame(
        {
            "model_a": names[a],
            "model_b": names[b],
            "winner": winners[rng.integers(0, 4, n)],
            "tstamp": rng.random(n) * 1e6,
        }
    )
    if with_ids:
        battles["vote_id"] = rng.permutation(n) * 7
    coded = CodedBattles(battles)
    # A mask that drops a model entirely: the subset's models shrink as encode_battles' would.
    mask = (rng.random(n) < 0.4) & (battles["model_a"] != "m-c").to_numpy()
    mask &= (battles["model_b"] != "m-c").to_numpy()
    alone = battles.loc[mask].reset_index(drop=True)
    subset = coded.subset(mask)
    expected = encode_battles(alone)
    assert subset.encoded.models == expected.models and "m-c" not in expected.models
    for field in ("a", "b", "outcome"):
        assert np.array_equal(getattr(subset.encoded, field), getattr(expected, field))
    assert subset.vote_hash == vote_set_hash(alone)
    for method in ("bt", "elo"):
        quick = compute_leaderboard(
            subset.battles, method=method, encoded=subset.encoded, vote_hash=subset.vote_hash
        )
        assert quick.to_json_dict() == compute_leaderboard(alone, method=method).to_json_dict()


@pytest.mark.parametrize("keep", [0.0, 0.3, 1.0])
def test_subset_hash_of_text_ids_equals_the_hash_of_the_subset_alone(keep: float) -> None:
    """Ids of any length and script hash as vote_set_hash's sorted lines, whichever rows stay."""
    rng = np.random.default_rng(11)
    n = 300
    names = np.array(["a", "b", "c", "d"])
    pairs = rng.choice(4, size=(n, 2))
    pairs[:, 1] = (pairs[:, 0] + 1 + rng.integers(0, 3, n)) % 4
    ids = [f"{'é' * (i % 3)}v{i}{'ü' if i % 7 == 0 else ''}" for i in rng.permutation(n * 5)[:n]]
    battles = pd.DataFrame(
        {
            "vote_id": ids,
            "model_a": names[pairs[:, 0]],
            "model_b": names[pairs[:, 1]],
            "winner": rng.choice(["model_a", "model_b", "tie"], n),
        }
    )
    mask = rng.random(n) < keep
    subset = CodedBattles(battles).subset(mask)
    assert subset.vote_hash == vote_set_hash(battles.loc[mask].reset_index(drop=True))
