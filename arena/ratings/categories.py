"""Category filters over the battles table: all, language, coding, long prompts, multi-turn,
vision (prompts with images), and the judged ones (hard prompts, math, instruction following,
creative writing)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from arena.ratings.errors import InvalidBattles

BoolArray = npt.NDArray[np.bool_]

ALL: Final = "all"
CODING: Final = "coding"
LONG: Final = "long"
MULTI_TURN: Final = "multi-turn"
VISION: Final = "vision"
LANGUAGE_PREFIX: Final = "language:"
FIXED_CATEGORIES: Final[tuple[str, ...]] = (ALL, CODING, LONG, MULTI_TURN, VISION)
# The public arena's "longer query" threshold, in tokens of the first prompt.
LONG_PROMPT_TOKENS: Final = 500
UNKNOWN_LANGUAGE: Final = "unknown"
TAG_CODING_COLUMN: Final = "tag_coding"
TAG_LONG_COLUMN: Final = "tag_long"
TAG_VISION_COLUMN: Final = "tag_vision"
# Judged categories: read from the judge's labels (arena/judge/), one column each; a battle the
# judge has not labelled has judged = False and belongs to none of them.
HARD: Final = "hard"
MATH: Final = "math"
INSTRUCTION_FOLLOWING: Final = "instruction-following"
CREATIVE_WRITING: Final = "creative-writing"
JUDGED_CATEGORIES: Final[tuple[str, ...]] = (HARD, MATH, INSTRUCTION_FOLLOWING, CREATIVE_WRITING)
JUDGED_COLUMN: Final = "judged"
JUDGE_HARD_SCORE_COLUMN: Final = "judge_hard_score"
JUDGE_REFUSAL_COLUMN: Final = "judge_refusal"
JUDGED_FLAG_COLUMNS: Final[dict[str, str]] = {
    MATH: "judge_math",
    INSTRUCTION_FOLLOWING: "judge_instruction_following",
    CREATIVE_WRITING: "judge_creative_writing",
}
# Arena-Hard's threshold: a prompt meeting at least 6 of the 7 criteria is a hard prompt.
HARD_MIN_CRITERIA: Final = 6

# English names as FastChat's clean-battle files spell them; codes not listed are reported as is.
LANGUAGE_NAMES: Final[dict[str, str]] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "az": "Azerbaijani", "be": "Belarusian",
    "bg": "Bulgarian", "bn": "Bengali", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech",
    "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "eo": "Esperanto", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "ga": "Irish", "gl": "Galician", "gu": "Gujarati",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "hy": "Armenian",
    "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese", "ka": "Georgian",
    "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean", "la": "Latin",
    "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian",
    "mr": "Marathi", "ms": "Malay", "my": "Burmese", "ne": "Nepali", "nl": "Dutch",
    "nn": "Norwegian Nynorsk", "no": "Norwegian", "pa": "Punjabi", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "si": "Sinhala", "sk": "Slovak",
    "sl": "Slovenian", "sq": "Albanian", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish",
    "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip

# Lines that read as code in most languages people ask about: a fence, a definition, an import,
# a statement ending in ; or {, a tag, a shell prompt. Heuristic, like FastChat's early filters.
_CODE_PATTERNS: Final = re.compile(
    r"```"
    r"|^\s*(def|class|import|from|function|fn|func|public|private|static|const|let|var|#include"
    r"|package|using|namespace|SELECT|INSERT|UPDATE|CREATE|template)\b[^\n]*[:({=;<]"
    r"|^\s*(for|while|if)\s*\(.*\)\s*\{?\s*$"
    r"|^[^\n]*[;{]\s*$\n^[^\n]*[;{}]\s*$"
    r"|^\s*</?[a-zA-Z][\w-]*(\s[^>]*)?>"
    r"|^\s*\$ \w+"
    r"|\b(console\.log|System\.out\.print|printf|std::|self\.|=>|->)",
    re.MULTILINE,
)
_CJK: Final = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_LETTER: Final = re.compile(r"[^\W\d_]")


def looks_like_code(text: str) -> bool:
    """Whether the text holds code: a fenced block or lines shaped like source code."""
    return bool(_CODE_PATTERNS.search(text))


def estimate_tokens(text: str) -> int:
    """Tokens, roughly as tokenizers count them: one per CJK character, one per 4 other ones."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


@cache
def _identifier() -> Any:
    # Imported on first use: the model takes about a second to load and most callers never need it.
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE)


def detect_language(text: str) -> str:
    """The language of a text by py3langid's bundled model, as an English name ('English').

    Text without letters is 'unknown'; a language without a name here is given by its ISO code.
    """
    if not _LETTER.search(text):
        return UNKNOWN_LANGUAGE
    code, _ = _identifier().classify(text)
    return LANGUAGE_NAMES.get(str(code), str(code))


def _normalise_language(name: str) -> str:
    wanted = name.strip()
    by_code = LANGUAGE_NAMES.get(wanted.lower())
    return (by_code or wanted).casefold()


def _texts(battles: pd.DataFrame, column: str) -> list[str]:
    return [
        "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
        for v in battles[column].tolist()
    ]


def battle_languages(battles: pd.DataFrame) -> pd.Series:
    """Each battle's language: the `language` column when present, else detected from `prompt`."""
    if "language" in battles.columns:
        languages = battles["language"].fillna(UNKNOWN_LANGUAGE).astype(str)
        return languages.mask(languages.str.strip() == "", UNKNOWN_LANGUAGE)
    if "prompt" not in battles.columns:
        raise InvalidBattles(
            "language categories need a language column or the prompt text (column prompt);"
            " this battles table has neither."
        )
    detected = {text: detect_language(text) for text in set(_texts(battles, "prompt"))}
    return pd.Series([detected[t] for t in _texts(battles, "prompt")], index=battles.index)


def _text_columns(battles: pd.DataFrame, category: str, columns: tuple[str, ...]) -> list[str]:
    present = [c for c in columns if c in battles.columns]
    if not present:
        raise InvalidBattles(
            f"category {category!r} needs the text of the battles (column(s)"
            f" {', '.join(columns)}); this battles table has none. Exports leave prompts out"
            " unless the operator enables it."
        )
    return present


def _flag(battles: pd.DataFrame, column: str) -> BoolArray:
    return np.asarray(battles[column].fillna(False).to_numpy(dtype=bool), dtype=bool)


def judged_mask(battles: pd.DataFrame, category: str) -> BoolArray:
    """Which battles the judge put in a judged category: hard (at least HARD_MIN_CRITERIA of the
    seven criteria, column judge_hard_score), math, instruction-following, creative-writing
    (boolean columns judge_math, ...). Battles not labelled (column judged false) are in none."""
    needed = (JUDGED_COLUMN, JUDGE_HARD_SCORE_COLUMN if category == HARD else "")
    column = JUDGED_FLAG_COLUMNS.get(category, "")
    missing = [c for c in (*needed, column) if c and c not in battles.columns]
    if missing:
        raise InvalidBattles(
            f"category {category!r} needs the judge's labels (column(s) {', '.join(missing)});"
            " this battles table has none: the arena it comes from has no judge, or they were"
            " left out."
        )
    labelled = _flag(battles, JUDGED_COLUMN)
    if category == HARD:
        scores = pd.to_numeric(battles[JUDGE_HARD_SCORE_COLUMN], errors="coerce").fillna(0)
        hard = np.asarray(scores.to_numpy() >= HARD_MIN_CRITERIA, dtype=bool)
        return np.asarray(labelled & hard, dtype=bool)
    return np.asarray(labelled & _flag(battles, column), dtype=bool)


def refusal_mask(battles: pd.DataFrame) -> BoolArray:
    """Battles where the judge found that at least one answer is a refusal (column
    judge_refusal; false where not labelled), for views that leave them out."""
    if JUDGE_REFUSAL_COLUMN not in battles.columns:
        raise InvalidBattles(
            "leaving refusals out needs the judge's labels (column judge_refusal);"
            " this battles table has none."
        )
    return _flag(battles, JUDGE_REFUSAL_COLUMN)


def category_mask(battles: pd.DataFrame, category: str) -> BoolArray:
    """Which battles belong to a category: 'all', 'coding', 'long', 'multi-turn', 'language:NAME'
    or a judged one ('hard', 'math', 'instruction-following', 'creative-writing': judged_mask).

    coding: code in the first prompt or in either answer (columns prompt, answer_a, answer_b);
    long: first prompt of at least LONG_PROMPT_TOKENS estimated tokens; multi-turn: turn > 1;
    language:NAME: the battle's language (name or ISO code, any case) is NAME. Boolean columns
    tag_coding and tag_long, when present, are those flags computed beforehand (the database
    stores them per battle) and are used instead of the text. vision: a prompt carried images
    (boolean column tag_vision; a text cannot tell).
    """
    n = len(battles)
    if category == ALL:
        return np.ones(n, dtype=bool)
    if category == CODING and TAG_CODING_COLUMN in battles.columns:
        return battles[TAG_CODING_COLUMN].fillna(False).to_numpy(dtype=bool)
    if category == LONG and TAG_LONG_COLUMN in battles.columns:
        return battles[TAG_LONG_COLUMN].fillna(False).to_numpy(dtype=bool)
    if category == CODING:
        columns = _text_columns(battles, category, ("prompt", "answer_a", "answer_b"))
        mask = np.zeros(n, dtype=bool)
        for column in columns:
            mask |= np.fromiter((looks_like_code(t) for t in _texts(battles, column)), bool, n)
        return mask
    if category == LONG:
        _text_columns(battles, category, ("prompt",))
        return np.fromiter(
            (estimate_tokens(t) >= LONG_PROMPT_TOKENS for t in _texts(battles, "prompt")), bool, n
        )
    if category == VISION:
        if TAG_VISION_COLUMN not in battles.columns:
            raise InvalidBattles(
                "category 'vision' needs the tag_vision column (whether a prompt of the battle "
                "carried images)."
            )
        return battles[TAG_VISION_COLUMN].fillna(False).to_numpy(dtype=bool)
    if category == MULTI_TURN:
        if "turn" not in battles.columns:
            raise InvalidBattles(
                "category 'multi-turn' needs the turn column (number of user turns per battle)."
            )
        turns = pd.to_numeric(battles["turn"], errors="coerce").fillna(1).to_numpy()
        return np.asarray(turns > 1, dtype=bool)
    if category in JUDGED_CATEGORIES:
        return judged_mask(battles, category)
    if category.startswith(LANGUAGE_PREFIX) and category[len(LANGUAGE_PREFIX) :].strip():
        wanted = _normalise_language(category[len(LANGUAGE_PREFIX) :])
        languages = battle_languages(battles)
        return np.asarray(languages.map(_normalise_language).to_numpy() == wanted, dtype=bool)
    raise InvalidBattles(
        f"unknown category {category!r}; use one of"
        f" {', '.join((*FIXED_CATEGORIES, *JUDGED_CATEGORIES))} or"
        " language:NAME (for example language:English or language:zh)."
    )


def filter_battles(battles: pd.DataFrame, category: str) -> pd.DataFrame:
    """The battles of one category, a new table (the same table for 'all')."""
    if category == ALL:
        return battles
    return battles.loc[category_mask(battles, category)].reset_index(drop=True)


def available_categories(battles: pd.DataFrame, *, min_battles: int = 1) -> list[str]:
    """Categories this table can be split into with at least `min_battles` battles each.

    'all' first, then those whose columns are present, then one 'language:NAME' per language, most
    battles first ('unknown' left out).
    """
    found = [ALL] if len(battles) >= min_battles else []
    for category in (CODING, LONG, MULTI_TURN, VISION, *JUDGED_CATEGORIES):
        try:
            if int(category_mask(battles, category).sum()) >= min_battles:
                found.append(category)
        except InvalidBattles:
            continue
    try:
        languages = battle_languages(battles).value_counts()
    except InvalidBattles:
        return found
    for language, count in languages.items():
        if str(language) != UNKNOWN_LANGUAGE and int(count) >= min_battles:
            found.append(f"{LANGUAGE_PREFIX}{language}")
    return found
