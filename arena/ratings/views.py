"""Leaderboard views: which battles an exclusion toggle leaves out (ties, short prompts, refusals),
and whether the votes held back beyond the duplicate-prompt limit are rated too.

A view is a set of exclusions applied to a category's battles before rating them, as the
toggles of FastChat's leaderboard ("exclude ties", "exclude short query", "exclude refusal"),
and its deduplication toggle: by default a table rates the counted votes, which leave out the
votes of a prompt used more often than the duplicate limit (FastChat's dedup_tag "sampled":
false); a view that keeps duplicates rates those too. Its key is the exclusions' names in
EXCLUSIONS order, then KEEP_DUPLICATES where it keeps them, joined by "+" ("" for none), so
"ties+short" names one table whatever the order the toggles were set in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from arena.ratings.categories import BoolArray, estimate_tokens
from arena.ratings.errors import InvalidBattles

NO_TIES: Final = "ties"
NO_SHORT: Final = "short"
NO_REFUSALS: Final = "refusals"
EXCLUSIONS: Final[tuple[str, ...]] = (NO_TIES, NO_SHORT, NO_REFUSALS)
# The view part that turns deduplication off: votes held back beyond the duplicate limit rated too.
KEEP_DUPLICATES: Final = "duplicates"
PLAIN: Final = ""
EXCLUSION_LABELS: Final[dict[str, str]] = {
    NO_TIES: "Exclude ties",
    NO_SHORT: "Exclude short prompts",
    NO_REFUSALS: "Exclude refusals",
}
# FastChat's "short query" toggle: fewer than 5 tokens in the first prompt.
DEFAULT_MIN_PROMPT_TOKENS: Final = 5
# Per-battle columns the exclusions read: the first prompt's token count (or its text), and a
# refusal marker (true when a judge labelled either answer a refusal).
PROMPT_TOKENS_COLUMN: Final = "prompt_tokens"
REFUSAL_COLUMN: Final = "refusal"
# Per battle: true where the vote was held back only because its prompt had been used more often
# than the duplicate limit (a battles file's dedup_tag {"sampled": false}); such rows are rated in
# the views that keep duplicates only.
DUPLICATE_COLUMN: Final = "duplicate"
_TIE_WINNERS: Final = ("tie", "tie (bothbad)")
# Not arena.ratings.battles' alias: the battles reader imports this module.
FloatArray = npt.NDArray[np.float64]


def view_key(exclusions: Iterable[str], *, keep_duplicates: bool = False) -> str:
    """The key of a set of exclusions, keeping duplicates or not; InvalidBattles names an
    unknown exclusion."""
    chosen = {e.strip() for e in exclusions if e.strip()}
    unknown = sorted(chosen - set(EXCLUSIONS))
    if unknown:
        raise InvalidBattles(
            f"unknown exclusion(s) {', '.join(map(repr, unknown))}; use {', '.join(EXCLUSIONS)}."
        )
    parts = [e for e in EXCLUSIONS if e in chosen]
    return "+".join([*parts, KEEP_DUPLICATES] if keep_duplicates else parts)


def _key_parts(key: str) -> set[str]:
    return {part.strip() for part in key.split("+") if part.strip()}


def view_exclusions(key: str) -> tuple[str, ...]:
    """The exclusions of a view key, in EXCLUSIONS order."""
    ordered = view_key(_key_parts(key) - {KEEP_DUPLICATES})  # checks them, too
    return tuple(ordered.split("+")) if ordered else ()


def keeps_duplicates(key: str) -> bool:
    """Whether a view rates the votes held back beyond the duplicate limit too."""
    return KEEP_DUPLICATES in _key_parts(key)


def duplicate_rows(battles: pd.DataFrame) -> BoolArray:
    """Which battles were held back beyond the duplicate limit (DUPLICATE_COLUMN); none when
    the table has no such column."""
    if DUPLICATE_COLUMN not in battles.columns:
        return np.zeros(len(battles), dtype=bool)
    marked = battles[DUPLICATE_COLUMN].astype("boolean").fillna(False)
    return np.asarray(marked.to_numpy(dtype=bool), dtype=bool)


def _prompt_tokens(battles: pd.DataFrame) -> FloatArray:
    """The first prompt's tokens per battle, as floats: NaN where a battle was not measured."""
    if PROMPT_TOKENS_COLUMN in battles.columns:
        tokens = pd.to_numeric(battles[PROMPT_TOKENS_COLUMN], errors="coerce")
        return np.asarray(tokens.to_numpy(dtype=np.float64, na_value=np.nan))
    if "prompt" in battles.columns:
        texts = battles["prompt"].fillna("").astype(str).tolist()
        return np.fromiter((estimate_tokens(t) for t in texts), np.float64, len(texts))
    raise InvalidBattles(
        f"excluding short prompts needs the column {PROMPT_TOKENS_COLUMN} (the first prompt's"
        " tokens, in the arena's battles exports) or prompt; this battles table has neither."
    )


def exclusion_mask(
    battles: pd.DataFrame, exclusion: str, *, min_prompt_tokens: int = DEFAULT_MIN_PROMPT_TOKENS
) -> BoolArray:
    """Which battles an exclusion leaves out (True: left out).

    ties: both tie kinds; short: a first prompt of fewer than `min_prompt_tokens` estimated
    tokens (a battle whose prompt was never measured stays in); refusals: the `refusal` column
    is true.
    """
    if exclusion == NO_TIES:
        return np.asarray(battles["winner"].isin(_TIE_WINNERS).to_numpy(), dtype=bool)
    if exclusion == NO_SHORT:
        tokens = _prompt_tokens(battles)
        with np.errstate(invalid="ignore"):
            return np.asarray(tokens < min_prompt_tokens, dtype=bool)
    if exclusion == NO_REFUSALS:
        if REFUSAL_COLUMN not in battles.columns:
            raise InvalidBattles(
                f"excluding refusals needs the column {REFUSAL_COLUMN} (a judge's refusal"
                " label per battle: in a battles file, category_tag's refusal_v0.2 or the CSV"
                " column judge_refusal); this battles table has none."
            )
        marked = battles[REFUSAL_COLUMN].astype("boolean").fillna(False)
        return np.asarray(marked.to_numpy(dtype=bool), dtype=bool)
    raise InvalidBattles(f"unknown exclusion {exclusion!r}; use {', '.join(EXCLUSIONS)}.")


def view_mask(
    battles: pd.DataFrame, key: str, *, min_prompt_tokens: int = DEFAULT_MIN_PROMPT_TOKENS
) -> BoolArray:
    """Which battles a view keeps (True: kept): the held-back duplicates only where the view
    keeps them."""
    kept = np.ones(len(battles), dtype=bool)
    if not keeps_duplicates(key):
        kept &= ~duplicate_rows(battles)
    for exclusion in view_exclusions(key):
        kept &= ~exclusion_mask(battles, exclusion, min_prompt_tokens=min_prompt_tokens)
    return kept


def view_params(key: str, *, min_prompt_tokens: int) -> dict[str, Any]:
    """What a table's params say of its view: its key, its exclusions and, when short prompts
    are left out, the cut, and keep_duplicates where the held-back duplicates are rated too;
    nothing for the plain view."""
    exclusions = view_exclusions(key)
    keep = keeps_duplicates(key)
    if not exclusions and not keep:
        return {}
    params: dict[str, Any] = {"view": view_key(exclusions, keep_duplicates=keep)}
    if exclusions:
        params["exclusions"] = list(exclusions)
    if NO_SHORT in exclusions:
        params["min_prompt_tokens"] = min_prompt_tokens
    if keep:
        params["keep_duplicates"] = True
    return params


def available_exclusions(battles: pd.DataFrame) -> tuple[str, ...]:
    """The exclusions this table has the columns for, in EXCLUSIONS order."""
    have = set(battles.columns)
    found = [NO_TIES]
    if PROMPT_TOKENS_COLUMN in have or "prompt" in have:
        found.append(NO_SHORT)
    if REFUSAL_COLUMN in have:
        found.append(NO_REFUSALS)
    return tuple(found)


def stored_views(battles: pd.DataFrame) -> tuple[str, ...]:
    """The views a recompute stores for a table: every combination of the available
    exclusions, the plain view first; each once more keeping the held-back duplicates when the
    table has some (without any, those views would be the same tables again)."""
    available = available_exclusions(battles)
    keeps = (False, True) if bool(duplicate_rows(battles).any()) else (False,)
    keys = [
        view_key((e for bit, e in enumerate(available) if chosen >> bit & 1), keep_duplicates=keep)
        for keep in keeps
        for chosen in range(1 << len(available))
    ]
    return tuple(sorted(keys, key=lambda k: (k.count("+") + (k != PLAIN), k)))
