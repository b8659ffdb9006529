"""The blocklist (parsing, matching, bounds, hot reload) and the moderation endpoint's client,
images included, against the fake upstream's real /moderations on loopback."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from arena import moderation
from arena.errors import ModerationUnavailable, PromptRefused
from arena.moderation import (
    BLOCKLIST,
    BLOCKLIST_TIMEOUT,
    MAX_BLOCKLIST_BYTES,
    PASSED,
    UNAVAILABLE,
    Blocklist,
    BlocklistError,
    EndpointDown,
    ModerationEndpoint,
    Moderator,
    match_blocklist,
    moderation_input,
    parse_blocklist,
    parse_moderation_answer,
    read_blocklist,
)
from arena.upstream.http import UpstreamClient
from tests.conftest import make_settings
from tests.fake_upstream import MOD_500, MOD_HUGE, FakeUpstream


def _reason(entries: str, text: str) -> str | None:
    return match_blocklist(parse_blocklist(entries), text).reason


def test_words_and_phrases_match_whole_words_however_they_are_written() -> None:
    entries = "# a comment\n\nzorblax\nforbidden phrase\n"
    for text in (
        "ZORBLAX",
        "a zorblax.",
        "zorb\u200blax",  # a zero-width space inside
        "ｚｏｒｂｌａｘ",  # fullwidth letters
        "z\u043erblax",  # a Cyrillic o
        "the Forbidden\n  phrase",
        "forbidden-phrase",
    ):
        assert _reason(entries, text) == BLOCKLIST, text
    for text in ("zorblaxes", "unzorblax", "forbidden", "phrase forbidden", "# a comment"):
        assert _reason(entries, text) is None, text


def test_patterns_search_the_folded_text_case_insensitively() -> None:
    entries = "re:\\bsecret-\\d{4}\\b\nre:k[i1]ll\\s+all"
    assert _reason(entries, "the SECRET-1234 code") == BLOCKLIST
    assert _reason(entries, "K1LL   ALL") == BLOCKLIST
    assert _reason(entries, "secret-12345 and a skillful allocation") is None


def test_a_catastrophic_pattern_is_stopped_and_refuses_the_text() -> None:
    """(a|aa)+$ on 80 a's and a b backtracks some 10^16 times: only the time bound ends it."""
    entries = parse_blocklist("re:harmless\nre:(a|aa)+$")
    started = time.process_time()
    verdict = match_blocklist(entries, "a" * 80 + "b")
    assert time.process_time() - started < moderation.PATTERN_SECONDS + 0.5
    assert verdict.reason == BLOCKLIST_TIMEOUT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("re:(unclosed", "line 1: '(unclosed' is not a valid pattern"),
        ("fine\n***", "line 2: '***' has no letters or digits"),
        ("re:", "line 1: 're:' with no pattern"),
        ("x" * 1001, "line 1: longer than 1000 characters"),
    ],
)
def test_an_unusable_entry_is_named_by_its_line(text: str, message: str) -> None:
    with pytest.raises(BlocklistError, match=message.replace("(", r"\(").replace("*", r"\*")):
        parse_blocklist(text)


def test_the_file_is_bounded_and_must_be_utf8(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"word\n" * (MAX_BLOCKLIST_BYTES // 5 + 1))
    with pytest.raises(BlocklistError, match="larger than 1048576 bytes"):
        read_blocklist(big)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9\n")
    with pytest.raises(BlocklistError, match="not UTF-8"):
        read_blocklist(latin)
    with pytest.raises(BlocklistError, match="cannot be read"):
        read_blocklist(tmp_path / "missing.txt")


def test_the_arena_refuses_to_start_with_an_unusable_blocklist_or_url(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("re:[z-a]\n")
    with pytest.raises(ValidationError, match="bad.txt, line 1"):
        make_settings("sqlite:///x.db", tmp_path, moderation_blocklist_file=bad)
    with pytest.raises(ValidationError, match="ARENA_MODERATION_URL: must not have a query"):
        make_settings("sqlite:///x.db", tmp_path, moderation_url="https://m.example/v1?x=1")


def _rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    # A new modification time even on a coarse clock.
    stamp = time.time_ns() + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


def test_the_blocklist_is_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "blocklist.txt"
    path.write_text("zorblax\n")
    blocklist = Blocklist(path)
    assert blocklist.check("zorblax").reason == BLOCKLIST
    assert not blocklist.reload_if_changed()  # unchanged

    _rewrite(path, "quibble\n")
    # Looked at no more often than every RELOAD_CHECK_SECONDS: still the old entries...
    assert blocklist.check("quibble") == PASSED
    blocklist._looked_at -= moderation.RELOAD_CHECK_SECONDS  # ...until that much time passed
    assert blocklist.check("quibble").reason == BLOCKLIST
    assert blocklist.check("zorblax") == PASSED

    # A file made unusable keeps the entries in use.
    _rewrite(path, "re:(broken\n")
    assert not blocklist.reload_if_changed()
    assert blocklist.check("quibble").reason == BLOCKLIST


@given(st.binary(max_size=300))
def test_any_answer_is_a_verdict_or_endpoint_down(body: bytes) -> None:
    try:
        reasons = parse_moderation_answer(body, 1)
    except EndpointDown:
        return
    assert len(reasons) == 1


@given(
    st.dictionaries(
        st.text(max_size=30), st.one_of(st.booleans(), st.none(), st.integers()), max_size=5
    ),
    st.booleans(),
)
def test_flagged_reasons_stay_within_the_known_categories(
    categories: dict[str, Any], flagged: bool
) -> None:
    answer = {"results": [{"flagged": flagged, "categories": categories}]}
    import json

    (reason,) = parse_moderation_answer(json.dumps(answer).encode(), 1)
    if not flagged:
        assert reason is None
    else:
        assert reason is not None
        category = reason.removeprefix("flagged:")
        assert category in moderation.CATEGORIES or category == moderation.OTHER_CATEGORY


def test_the_input_of_a_prompt_with_images_is_openais_multimodal_list() -> None:
    assert moderation_input("hello") == "hello"
    assert moderation_input("look", ["data:image/png;base64,AAAA"]) == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]


def _data_url(content: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n" + content).decode()


def _moderator(upstream: FakeUpstream, client: UpstreamClient, **options: Any) -> Moderator:
    endpoint = ModerationEndpoint(
        f"{upstream.base_url}/moderations",
        api_key=None,
        model="",
        timeout=options.pop("timeout", 2.0),
        allow_private=True,
    )
    return Moderator(client=client, endpoint=endpoint, **options)


def test_images_go_to_the_endpoint_as_data_urls(fake_upstream: FakeUpstream) -> None:
    flagged_image = _data_url(b"pixels FLAG-sexual pixels")
    clean_image = _data_url(b"pixels")
    recorded: list[tuple[str, str]] = []

    async def record(stage: str, reason: str) -> None:
        recorded.append((stage, reason))

    async def go() -> None:
        async with UpstreamClient() as client:
            moderator = _moderator(fake_upstream, client, record=record)
            await moderator.check_prompt("what is in this picture?", images=[clean_image])
            with pytest.raises(PromptRefused, match=r"flagged it \(sexual\)"):
                await moderator.check_prompt("what is in this picture?", images=[flagged_image])

    before = len(fake_upstream.received)
    asyncio.run(go())
    asked = [r.body for r in fake_upstream.received[before:] if r.path.endswith("/moderations")]
    assert asked[-1] == {
        "input": [
            {"type": "text", "text": "what is in this picture?"},
            {"type": "image_url", "image_url": {"url": flagged_image}},
        ]
    }
    assert recorded == [("prompt", "flagged:sexual")]


def test_answers_are_checked_in_one_request(fake_upstream: FakeUpstream) -> None:
    async def go() -> list[str | None]:
        async with UpstreamClient() as client:
            moderator = _moderator(fake_upstream, client)
            verdicts = [
                await moderator.check_answers(["a fine answer", "another fine one"]),
                await moderator.check_answers(["a fine answer", "oh FLAG-self-harm/intent no"]),
            ]
        return [verdict.reason for verdict in verdicts]

    assert asyncio.run(go()) == [None, "flagged:self-harm/intent"]


def test_a_bounded_read_of_the_endpoints_answer(fake_upstream: FakeUpstream) -> None:
    """An answer over MAX_RESPONSE_BYTES, or an error status, is the endpoint down."""

    async def go() -> list[str | None]:
        async with UpstreamClient() as client:
            moderator = _moderator(fake_upstream, client)
            return [
                (await moderator.verdict_on_prompt(prompt)).reason for prompt in (MOD_HUGE, MOD_500)
            ]

    assert asyncio.run(go()) == [UNAVAILABLE, UNAVAILABLE]


def test_a_refused_prompt_says_why_without_what_matched() -> None:
    blocked = moderation.prompt_refusal(moderation.Verdict(BLOCKLIST, "phrase 'zorblax'"))
    assert isinstance(blocked, PromptRefused) and "zorblax" not in blocked.message
    down = moderation.prompt_refusal(moderation.Verdict(UNAVAILABLE, "HTTP 500"))
    assert isinstance(down, ModerationUnavailable) and down.status_code == 503
