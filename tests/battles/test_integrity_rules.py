"""The integrity rules on their own: identity terms, prompt keys, reading time, vote flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arena.battles.integrity import (
    DUPLICATE_PROMPT,
    IDENTITY_LEAK,
    RATE_LIMITED,
    TOO_FAST,
    VoteChecks,
    identity_terms,
    names_itself,
    normalise_prompt,
    prompt_hash,
    reading_seconds,
    vote_flags,
)
from arena.models import Battle

ALIASES = {"OpenAI": ["ChatGPT"], "llama-3-8b": ["Llama"]}


@pytest.mark.parametrize(
    ("answer", "leaks"),
    [
        ("I am ChatGPT, a model trained by OpenAI.", True),
        ("i was made by openai", True),
        ("As GPT 4o I think", True),
        ("as gpt4o i think", True),
        ("My name is GPT-4o.", True),
        ("gpt-4omega is not a model", False),
        ("The OpenAIR festival", False),
        ("Paris is the capital of France.", False),
    ],
)
def test_a_model_naming_itself(answer: str, leaks: bool) -> None:
    terms = identity_terms("gpt-4o", "OpenAI", ALIASES)
    assert names_itself(answer, terms) is leaks


def test_aliases_are_per_name_and_organisation_and_short_terms_are_ignored() -> None:
    assert identity_terms("llama-3-8b", "Meta", ALIASES) == ["llama-3-8b", "Meta", "Llama"]
    # A one- or two-letter organisation would match ordinary text everywhere.
    assert identity_terms("zeta", "X", {}) == ["zeta"]
    assert not names_itself("x marks the spot", identity_terms("zeta", "X", {}))
    assert names_itself("I'm LLAMA!", identity_terms("llama-3-8b", "Meta", ALIASES))


def test_regex_characters_in_names_are_literal() -> None:
    terms = identity_terms("c++bot", "Org (beta)", {})
    assert names_itself("I am c++bot", terms)
    assert not names_itself("I am cbot", terms)
    assert names_itself("made by org (beta)", terms)
    assert not names_itself("made by org beta", terms)


@given(st.text(max_size=60))
def test_prompt_key_ignores_case_and_spacing(prompt: str) -> None:
    noisy = "  " + prompt.upper().replace(" ", " \t ") + "\n"
    assert prompt_hash(noisy) == prompt_hash(prompt.upper())
    assert normalise_prompt(normalise_prompt(prompt)) == normalise_prompt(prompt)


def test_prompt_key_examples() -> None:
    assert normalise_prompt("  Hello\n\tWORLD ") == "hello world"
    assert normalise_prompt("ｈｅｌｌｏ") == "hello"  # full-width forms fold
    assert prompt_hash("hello world") != prompt_hash("hello  worlds")


CHECKS = VoteChecks(reading_chars_per_second=100, min_vote_seconds=1.0, max_reading_seconds=20)


def test_reading_time_grows_with_the_answers_within_bounds() -> None:
    assert reading_seconds(0, CHECKS) == 1.0
    assert reading_seconds(500, CHECKS) == 5.0
    assert reading_seconds(1_000_000, CHECKS) == 20.0


def _battle(flags: list[str], answer_chars: int, shown: datetime | None) -> Battle:
    return Battle(flags=flags, answer_chars=answer_chars, stream_started_at=shown, ready_at=shown)


def test_vote_flags() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    read = _battle([], 1000, start)
    assert vote_flags(read, now=start + timedelta(seconds=11), checks=CHECKS) == []
    assert vote_flags(read, now=start + timedelta(seconds=9), checks=CHECKS) == [TOO_FAST]
    leaked = _battle([IDENTITY_LEAK, DUPLICATE_PROMPT], 10, start)
    throttled = VoteChecks(100, 1.0, 20, throttled=True)
    assert vote_flags(leaked, now=start + timedelta(seconds=0.5), checks=throttled) == sorted(
        [IDENTITY_LEAK, DUPLICATE_PROMPT, TOO_FAST, RATE_LIMITED]
    )
    # Without the checks (a caller that is not the HTTP route) only the battle's flags apply.
    assert vote_flags(leaked, now=start, checks=None) == sorted([IDENTITY_LEAK, DUPLICATE_PROMPT])
    # A battle with no start time (seeded directly) cannot be judged on time.
    assert vote_flags(_battle([], 1000, None), now=start, checks=CHECKS) == []
