"""Style features: cl100k_base token counts and FastChat's Markdown counts, checked by hand and
against a transcription of FastChat's own patterns."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from arena.ratings.style_control import metadata_values
from arena.ratings.style_features import (
    CL100K_SHA256,
    cl100k_base,
    conv_metadata,
    count_markdown,
    count_tokens,
    side_style,
    style_sums,
    without_code,
)


def test_the_encoding_is_cl100k_base_from_the_installed_file() -> None:
    encoding = cl100k_base()
    # Token ids published with tiktoken (its README) and in OpenAI's cookbook for cl100k_base.
    assert encoding.encode_ordinary("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert encoding.encode_ordinary("hello world") == [15339, 1917]
    assert encoding.n_vocab == 100277
    assert len(CL100K_SHA256) == 64


def test_special_token_text_in_an_answer_counts_as_ordinary_text() -> None:
    # An answer is untrusted: "<|endoftext|>" is text here, several tokens, and no error.
    assert count_tokens("<|endoftext|>") > 1
    assert count_tokens("") == 0


def test_markdown_counted_by_hand() -> None:
    text = "\n".join(
        [
            "# One",
            "## Two",
            "###### Six",
            "####### seven marks is no header",
            "#no space is no header",
            " # an indented mark is no header",
            "1. first",
            "   2. second, indented",
            "10) not a list item",
            "- dash",
            "* star",
            "+ plus",
            "-no space is no item",
            "**bold** and **more bold** and __under__",
            "**not bold across",
            "lines** nor ****, though ** this ** counts, as in FastChat",
        ]
    )
    counts = count_markdown(text)
    assert counts.headers == (1, 1, 0, 0, 0, 1)
    assert (counts.ordered, counts.unordered) == (2, 3)
    assert (counts.bold_stars, counts.bold_underscores) == (4, 1)


def test_code_blocks_are_left_out_of_the_markdown_counts() -> None:
    answer = "# Real\n```python\n# a comment, no header\n- no item\n**no bold**\n```\n- real item"
    assert without_code(answer) == "# Real\n``````\n- real item"
    style = side_style([answer])
    assert style.markdown.headers[0] == 1
    assert (style.markdown.unordered, style.markdown.bold_stars) == (1, 0)


def test_a_side_sums_its_turns_and_metadata_has_fastchats_names() -> None:
    first, second = "# Plan\n- step", "1. again\n**done**"
    metadata = conv_metadata([first, second], ["plain"])
    assert metadata == {
        "sum_assistant_a_tokens": count_tokens(first) + count_tokens(second),
        "header_count_a": {"h1": 1, "h2": 0, "h3": 0, "h4": 0, "h5": 0, "h6": 0},
        "list_count_a": {"ordered": 1, "unordered": 1},
        "bold_count_a": {"**": 1, "__": 0},
        "sum_assistant_b_tokens": count_tokens("plain"),
        "header_count_b": {"h1": 0, "h2": 0, "h3": 0, "h4": 0, "h5": 0, "h6": 0},
        "list_count_b": {"ordered": 0, "unordered": 0},
        "bold_count_b": {"**": 0, "__": 0},
    }
    # Per-turn token counts summed, not the joined text re-tokenised
    assert metadata["sum_assistant_a_tokens"] == count_tokens(first) + count_tokens(second)
    sums = style_sums(metadata)
    assert sums["style_a_headers"] == 1 and sums["style_a_lists"] == 2
    assert sums["style_a_bold"] == 1 and sums["style_b_bold"] == 0
    # the style fit reads the same eight numbers from the dict
    assert list(sums.values()) == metadata_values(metadata)


def test_swapping_the_sides_swaps_the_metadata() -> None:
    a, b = ["## Head\n* x"], ["__u__ and 3. no"]
    forward, backward = conv_metadata(a, b), conv_metadata(b, a)
    for name in ("sum_assistant_{}_tokens", "header_count_{}", "list_count_{}", "bold_count_{}"):
        assert forward[name.format("a")] == backward[name.format("b")]
        assert forward[name.format("b")] == backward[name.format("a")]


# FastChat's patterns (fastchat/serve/monitor/add_markdown_info.py), transcribed as the oracle.
def _fastchat(markdown_text: str) -> dict[str, Any]:
    for block in re.compile("```([^`]*)```").findall(markdown_text):
        markdown_text = markdown_text.replace(block, "")
    return {
        "headers": [
            len(re.findall(r"^#{" + str(level) + r"}\s", markdown_text, re.MULTILINE))
            for level in range(1, 7)
        ],
        "ordered": len(re.findall(r"^\s*\d+\.\s", markdown_text, re.MULTILINE)),
        "unordered": len(re.findall(r"^\s*[-*+]\s", markdown_text, re.MULTILINE)),
        "**": len(re.findall(r"\*\*[^*\n]+\*\*", markdown_text)),
        "__": len(re.findall(r"__[^_\n]+__", markdown_text)),
    }


markdownish = st.text(alphabet="#*-_+.`12 \n\tab\u00a0\u0663", max_size=120)


@settings(max_examples=400, deadline=None)
@given(st.lists(markdownish, min_size=1, max_size=3))
def test_counts_behave_as_fastchats_patterns(answers: list[str]) -> None:
    expected = _fastchat("\n".join(answers))
    counts = side_style(answers).markdown
    assert list(counts.headers) == expected["headers"]
    assert counts.ordered == expected["ordered"] and counts.unordered == expected["unordered"]
    assert counts.bold_stars == expected["**"] and counts.bold_underscores == expected["__"]
