"""The PII redactor on a seeded corpus: recall per kind, clean sentences left alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arena.leaderboard.redaction import (
    ADDRESS,
    CARD,
    EMAIL,
    IBAN,
    IP,
    NATIONAL_ID,
    PHONE,
    PLACEHOLDERS,
    find_personal_data,
    redact,
)
from tests.leaderboard.redaction_corpus import Planted, clean_sentences, planted

SAMPLES = 2000
# Structured kinds: the bar. IDs and addresses: what the docs promise for the formats
# the redactor claims (README, "Released conversations").
RECALL = {EMAIL: 0.99, PHONE: 0.99, CARD: 0.99, IBAN: 0.99, IP: 0.99, NATIONAL_ID: 0.99}
ADDRESS_RECALL = 0.95


def _caught(item: Planted) -> bool:
    out = redact(item.sentence)
    return item.value not in out and item.placeholder in out


@pytest.mark.parametrize("placeholder", sorted(RECALL))
def test_recall_of_structured_kinds(placeholder: str) -> None:
    corpus = planted(placeholder, SAMPLES)
    missed = [item.sentence for item in corpus if not _caught(item)]
    assert 1 - len(missed) / len(corpus) >= RECALL[placeholder], missed[:10]


def test_recall_of_postal_addresses() -> None:
    corpus = planted(ADDRESS, SAMPLES)
    missed = [item.sentence for item in corpus if not _caught(item)]
    assert 1 - len(missed) / len(corpus) >= ADDRESS_RECALL, missed[:10]


def test_clean_sentences_are_left_alone() -> None:
    sentences = clean_sentences(5000)
    changed = [(s, redact(s)) for s in sentences if redact(s) != s]
    assert len(changed) / len(sentences) <= 0.01, changed[:10]


def test_the_corpus_is_in_several_languages_and_layouts() -> None:
    phones = [p.value for p in planted(PHONE, 500)]
    assert any(v.startswith("+") for v in phones) and any(v.startswith("00") for v in phones)
    assert any(v.startswith("(") for v in phones) and any("." in v for v in phones)
    sentences = [p.sentence for p in planted(EMAIL, 200)]
    assert any("邮箱" in s for s in sentences) and any("Schreib" in s for s in sentences)
    assert any(":" in p.value for p in planted(IP, 100))  # IPv6
    assert any(" " in p.value for p in planted(IBAN, 50))  # grouped in fours


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Call me at (415) 555-0132 tomorrow, or +33 6 12 34 56 78, or 0049 30 1234567.",
            "Call me at [PHONE] tomorrow, or [PHONE], or [PHONE].",
        ),
        (
            "Mon numéro : 06 12 34 56 78, mail jean.dupont+arena@mail.example.co.uk.",
            "Mon numéro : [PHONE], mail [EMAIL].",
        ),
        ("我的电话是13800138000，邮箱是li.wei@qq.com。", "我的电话是[PHONE]，邮箱是[EMAIL]。"),
        (
            "Server 203.0.113.45 and 2001:db8:85a3::8a2e:370:7334, not 127.0.0.1:8000.",
            "Server [IP] and [IP], not 127.0.0.1:8000.",
        ),
        (
            "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX.",
            "Card [CARD], IBAN [IBAN] BIC COBADEFFXXX.",
        ),
        ("SSN 536-22-1234, DNI 12345678Z.", "SSN [NATIONAL_ID], DNI [NATIONAL_ID]."),
        (
            "Send it to 221B Baker Street, London NW1 6XE or Hauptstraße 5, 10115 Berlin.",
            "Send it to [ADDRESS], London [ADDRESS] or [ADDRESS], [ADDRESS].",
        ),
    ],
)
def test_typed_placeholders(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The card 4111 1111 1111 1112 fails its Luhn check.",
        "IBAN DE89 3704 0044 0532 0130 01 has wrong check digits.",
        "Released on 2024-03-15 at 10:30, version 3.12.1, for $1,299.99.",
        "pi = 3.14159265358979; the log says ts=1700000000000.",
        "std::vector<int> v(10); auto it = v.begin(); // 0x7fffffff",
        "Dear user, 1 234 567 people live there (and 919 581 651 more).",
        "x = a@b.T for matrices; @app.get('/items/{id}') is a decorator.",
    ],
)
def test_look_alikes_stay(text: str) -> None:
    assert redact(text) == text


def test_spans_do_not_overlap_and_earlier_kinds_win() -> None:
    # The digits of an email would be a phone number on their own.
    text = "Write to +33612345678@sms.example.com or call +33 6 12 34 56 78."
    spans = find_personal_data(text)
    assert [kind for _, _, kind in spans] == [EMAIL, PHONE]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789 +-.()/:@abcXYZ号路\n"), max_size=400))
def test_any_text_gives_valid_spans(text: str) -> None:
    spans = find_personal_data(text)
    assert all(0 <= s < e <= len(text) and kind in PLACEHOLDERS for s, e, kind in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    out = redact(text)
    assert len(out) <= len(text) + sum(len(kind) for _, _, kind in spans)
