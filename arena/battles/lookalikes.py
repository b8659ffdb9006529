"""Text folded for identity matching: what reads the same to a person compares equal.

An answer can spell its model's name so that a person still reads it while a plain comparison
misses it: "zwleak" with a zero-width space (U+200B) or a soft hyphen (U+00AD) inside, in
fullwidth letters (U+FF5A...), or with a Cyrillic e (U+0435) for the Latin one. fold_lookalikes()
undoes each of these, in linear time, on answers and names alike:

1. NFKC: compatibility forms (fullwidth, ligatures, mathematical letters) to their plain letters.
2. Invisible characters dropped: every format character (category Cf: zero-width space and
   joiners, soft hyphen, direction marks, tag characters) and the other default-ignorable code
   points Unicode says to render as nothing (combining grapheme joiner, variation selectors,
   Hangul fillers).
3. Look-alikes from other scripts to the ASCII character they imitate, from Unicode's
   confusables data (UTS #39, as shipped by the confusable_homoglyphs package): Cyrillic а
   (U+0430) to a, Greek ο (U+03BF) to o, Cherokee Ꭺ (U+13AA) to a, a hyphen (U+2010) to -,
   some 1,500 in all. ASCII itself is left alone: folding 0 to o or 1 to l, as
   the UTS #39 skeleton does, would make "gpt-40" the name "gpt-4o" and flag ordinary text.
4. Case folded (then step 3 again, for the lower-case forms case folding makes).
"""

from __future__ import annotations

import json
import unicodedata
from functools import cache
from importlib import resources
from typing import Final

import numpy as np
import numpy.typing as npt

# Default-ignorable code points (Unicode's DerivedCoreProperties.txt) that are not format
# characters: some are combining marks or letters, and some are not assigned yet, but all are
# meant to be drawn as nothing, so they hide inside a name as well as a zero-width space does.
INVISIBLE_RANGES: Final[tuple[tuple[int, int], ...]] = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors and vowel separator
    (0x2065, 0x2065),  # unassigned, in the invisible operators' block
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # unassigned, before the interlinear annotation characters
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement and the unassigned rest
)
# Where format characters and one-character compatibility forms are: the Basic and
# Supplementary Multilingual Planes, the CJK compatibility ideographs, and the tags (plane 14).
# Looking only there keeps building the table at a few tenths of a second.
CODE_POINT_SEARCH: Final = (
    range(0x0000, 0x20000),
    range(0x2F800, 0x2FA20),
    range(0xE0000, 0xE1000),
)
CODE_POINTS: Final = 0x110000
# What the table gives for a character to drop: no code point has this number.
DROP: Final = CODE_POINTS

CodeTable = npt.NDArray[np.uint32]


def _confusables() -> dict[str, list[dict[str, str]]]:
    # The package's documented data file (Unicode's confusables.txt as JSON), read once for the
    # table and let go: importing the package's module would keep it, some 18 MB, for good.
    data = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    loaded: dict[str, list[dict[str, str]]] = json.loads(data)
    return loaded


def _latin_lookalike(char: str, data: dict[str, list[dict[str, str]]]) -> str | None:
    """The ASCII character `char` imitates, case folded, or None.

    The confusables data pairs each character with its prototype in both directions; for a
    character outside ASCII the ASCII partners are its prototype (never more than one). Only
    one-character prototypes are taken: the longer ones are mostly punctuation (a double quote as
    two apostrophes) that no name is made of. UTS #39 takes lower-case l as the prototype of every
    vertical stroke, capital I among them; matching here ignores case and leaves ASCII as it is,
    so a capital stroke (Greek capital iota, Cyrillic palochka) becomes i, as ASCII I does once
    case folded.
    """
    found = [entry["c"] for entry in data.get(char, ()) if entry["c"].isascii()]
    if len(found) != 1 or len(found[0]) != 1:
        return None
    lookalike = found[0].casefold()
    if lookalike == "l" and char != char.casefold():
        return "i"
    return lookalike


@cache
def folding_table() -> CodeTable:
    """For every code point what it folds to: DROP, or its one-character compatibility form
    (NFKC) made ASCII if it imitates an ASCII character, or else itself.

    Built on first use, in a few tenths of a second (the app builds it as it starts); 4.5 MB, four
    bytes a code point, so that folding a text is one array lookup per character."""
    compatible = np.arange(CODE_POINTS, dtype=np.uint32)
    lookalike = np.arange(CODE_POINTS, dtype=np.uint32)
    for search in CODE_POINT_SEARCH:
        for code in search:
            char = chr(code)
            if unicodedata.category(char) == "Cf":
                lookalike[code] = DROP
                continue
            form = unicodedata.normalize("NFKC", char)
            if len(form) == 1 and form != char:
                compatible[code] = ord(form)
    for first, last in INVISIBLE_RANGES:
        lookalike[first : last + 1] = DROP
    data = _confusables()
    for char in data:
        if len(char) == 1 and not char.isascii() and lookalike[ord(char)] != DROP:
            ascii_char = _latin_lookalike(char, data)
            if ascii_char is not None:
                lookalike[ord(char)] = ord(ascii_char)
    table: CodeTable = lookalike[compatible]
    table.setflags(write=False)
    return table


def _fold_characters(text: str, table: CodeTable) -> str:
    # str.translate looks every character up in a dict, some 200 ns each outside ASCII; as an
    # array of code points the whole text is folded at once, some 10 ns a character.
    encoded = text.encode("utf-32-le", "surrogatepass")
    codes = table[np.frombuffer(encoded, dtype=np.uint32).astype(np.intp)]
    if codes.max(initial=0) == DROP:
        codes = codes[codes != DROP]
    return codes.tobytes().decode("utf-32-le", "surrogatepass")


def fold_lookalikes(text: str) -> str:
    """`text` as it reads: NFKC, invisible characters gone, look-alikes Latin, case folded."""
    if text.isascii():
        # Nothing in ASCII is invisible, a compatibility form or folded as a look-alike.
        return text.casefold()
    table = folding_table()
    # The table first: it does NFKC's one-character mappings (fullwidth punctuation among them),
    # after which CPython's NFKC finds most text normalised already; on the raw text of a
    # Chinese answer it took 0.5 us a character.
    folded = unicodedata.normalize("NFKC", _fold_characters(text, table)).casefold()
    return folded if folded.isascii() else _fold_characters(folded, table)
