"""Identity matching on text as a person reads it: invisible characters, look-alikes, case."""

from __future__ import annotations

import time
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arena.battles.integrity import identity_terms, names_itself
from arena.battles.lookalikes import fold_lookalikes

TERMS = identity_terms("zwleak", "Open Parrot", {})
INVISIBLE = (
    "\u200b",  # zero-width space
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner
    "\u2060",  # word joiner
    "\ufeff",  # zero-width no-break space
    "\u00ad",  # soft hyphen
    "\u034f",  # combining grapheme joiner (a mark, not a format character)
    "\ufe0f",  # variation selector 16
    "\U000e0041",  # tag latin capital letter a
    "\u202e",  # right-to-left override
)
# Letters of other scripts drawn like Latin ones, as an answer could put them in a name.
LOOKALIKES = {
    "a": ("\u0430", "\u03b1"),  # Cyrillic a, Greek alpha
    "e": ("\u0435",),  # Cyrillic ie
    "o": ("\u043e", "\u03bf", "\u0585"),  # Cyrillic o, Greek omicron, Armenian oh
    "p": ("\u0440", "\u03c1"),  # Cyrillic er, Greek rho
    "c": ("\u0441",),  # Cyrillic es
    "i": ("\u0456", "\u0131", "\u04cf"),  # Ukrainian i, dotless i, Cyrillic small palochka
    "l": ("\u01c0", "\u2113"),  # dental click, script small l
    "r": ("\u0433",),  # Cyrillic ghe
    "w": ("\u051d",),  # Cyrillic we
    "z": ("\u1d22",),  # Latin letter small capital z
}


@pytest.mark.parametrize(
    "answer",
    [
        "I am zw\u200bleak.",  # zero-width space inside the name
        "I am z\u200dw\u200cl\u2060e\ufeffak.",  # a different invisible between every letter
        "I am zw\u00adleak.",  # soft hyphen
        "I am zwl\u0435ak.",  # Cyrillic ie for e
        "I am zwle\u0430k.",  # Cyrillic a for a
        "I am \uff5a\uff57\uff4c\uff45\uff41\uff4b.",  # fullwidth
        "I AM ZWLEAK.",
        "I am ZwLeAk.",
        "I am \U0001d433\U0001d430\U0001d425\U0001d41e\U0001d41a\U0001d424.",  # mathematical bold
        "I am zw\u034fleak.",  # combining grapheme joiner
        "I am zwle\ufe0fak.",  # variation selector
        "I am zw\U000e0020leak.",  # tag space
        "Made by \u041e\u0440\u0435n \u0420\u0430rr\u043et.",  # Cyrillic O, p, e, P, a, o
        "Made by OPEN\u2010PARROT.",  # a Unicode hyphen for the separator
        "Made by \u039f\u03a1\u0395\u039d P\u0391RR\u039fT.",  # Greek capitals
    ],
)
def test_a_disguised_name_is_found(answer: str) -> None:
    assert names_itself(answer, TERMS), answer


@pytest.mark.parametrize(
    "answer",
    [
        "Paris is the capital of France.",
        "Open the parrot's cage.",  # the organisation's words, apart and in another order
        "The zwleaks are many.",  # a longer word
        "Это ответ по-русски, о Москве и Париже.",
        "Καλημέρα σας, τι κάνετε;",
        "今天天气很好，我们去公园。",
        "z w l e a k, spelt out with spaces",
        "zw\u00a0leak: a no-break space is a visible gap, as a space is",
    ],
)
def test_ordinary_text_is_not_taken_for_a_name(answer: str) -> None:
    assert not names_itself(answer, TERMS), answer


def test_a_common_word_as_organisation_matches_only_the_word() -> None:
    terms = identity_terms("gpt-4o", "Meta", {})
    assert names_itself("I was trained by \u039c\u0435ta.", terms)
    for ordinary in (
        "metadata",
        "Metallica",
        "parameters",
        "a metaphor",
        "\u043c\u0435\u0442\u0430",
    ):
        assert not names_itself(f"It is about {ordinary}.", terms), ordinary


def test_a_term_counts_by_its_folded_length() -> None:
    # Padded to three characters with invisible ones, a one-letter organisation is still one
    # letter, and would otherwise match every "x" in every answer.
    assert identity_terms("zwleak", "X\u200b\u200b", {}) == ["zwleak"]
    assert identity_terms("zwleak", "\uff38\uff39\uff3a", {}) == ["zwleak", "\uff38\uff39\uff3a"]
    assert identity_terms("zwleak", "ZWLEAK", {}) == ["zwleak"]


def test_capital_strokes_fold_like_capital_i() -> None:
    # UTS #39 draws capital I as l; here case is ignored and ASCII kept, so I stays i.
    assert fold_lookalikes("\u0399BM \u04c0BM IBM") == "ibm ibm ibm"
    assert fold_lookalikes("\u0410\u0412\u0421") == "abc"  # Cyrillic capitals
    assert fold_lookalikes("gpt-40 l1ama") == "gpt-40 l1ama"  # ASCII is never folded


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=3, max_size=12)


@st.composite
def disguised(draw: st.DrawFn, name: str) -> str:
    """`name` with look-alikes, fullwidth letters, case changes and invisible characters."""
    spelt = []
    for letter in name:
        kind = draw(st.sampled_from(["plain", "upper", "fullwidth", "lookalike"]))
        if kind == "upper":
            letter = letter.upper()
        elif kind == "fullwidth":
            letter = chr(ord(letter) + 0xFEE0)
        elif kind == "lookalike" and letter in LOOKALIKES:
            letter = draw(st.sampled_from(LOOKALIKES[letter]))
        spelt.append(letter)
        spelt.append("".join(draw(st.lists(st.sampled_from(INVISIBLE), max_size=2))))
    return "".join(spelt)


@given(st.data(), names)
def test_a_name_is_found_however_it_is_disguised(data: st.DataObject, name: str) -> None:
    answer = f"Hello! I am {data.draw(disguised(name))}, your assistant."
    assert names_itself(answer, identity_terms(name, "", {}))


@given(st.text(max_size=200))
def test_folding_is_stable(text: str) -> None:
    folded = fold_lookalikes(text)
    assert fold_lookalikes(folded) == folded
    assert not any(unicodedata.category(char) == "Cf" for char in folded)


@pytest.mark.parametrize(
    "hostile",
    [
        "\u200b" * 65_536,
        "z\u200bw\u200bl\u200be\u200ba" * 6_000,
        "open" + "-" * 65_000 + "parro",
        ("\uff4f\uff50\uff45\uff4e " * 20_000)[:65_536],
        "\u4e2d\u6587\uff0c" * 20_000,
    ],
    ids=["invisible", "near-misses", "separators", "fullwidth", "chinese"],
)
def test_a_64_kb_answer_is_checked_in_bounded_time(hostile: str) -> None:
    names_itself("warm up", TERMS)
    started = time.perf_counter()
    names_itself(hostile, TERMS)
    # Some 5 ms here at most; the margin is for a busy machine.
    assert time.perf_counter() - started < 1.0
