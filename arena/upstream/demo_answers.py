"""What the demo models say: deterministic answers composed from the conversation, one style each.

No randomness and no weights: every choice is a function of the conversation's text (through a
hash where a variant is picked), so the same conversation always gets the same answer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, DivisionByZero, InvalidOperation

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#'-]*")
_ARITHMETIC = re.compile(
    r"(-?\d+(?:\.\d+)?)\s*([-+*/x×÷]|plus|minus|times|divided by)\s*(-?\d+(?:\.\d+)?)",
    re.IGNORECASE,
)
_STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself please tell explain give show
    know want need like make get let lets write help hi hello hey thanks thank much many also
    something anything really way ways thing things use using good best better one two three
    four five six seven eight nine ten list name some example examples short long quick simple
    """.split()
)
_GREETINGS = frozenset({"hi", "hello", "hey", "howdy", "greetings", "yo", "hiya"})
_YES_NO_OPENERS = frozenset(
    {"is", "are", "can", "could", "do", "does", "did", "should", "will", "would", "was", "has"}
)
_CODE_WORDS = {
    "python": "python",
    "py": "python",
    "pandas": "python",
    "django": "python",
    "javascript": "javascript",
    "js": "javascript",
    "typescript": "javascript",
    "react": "javascript",
    "sql": "sql",
    "postgres": "sql",
    "postgresql": "sql",
    "sqlite": "sql",
    "mysql": "sql",
    "bash": "bash",
    "shell": "bash",
    "rust": "rust",
    "cargo": "rust",
}
_CODE_HINTS = frozenset(
    {
        "code",
        "function",
        "program",
        "programming",
        "bug",
        "debug",
        "compile",
        "algorithm",
        "regex",
        "loop",
        "array",
        "implement",
        "snippet",
    }
)


@dataclass(frozen=True)
class Picture:
    """What the demo's image reader makes of an attached picture: its size and main colour."""

    width: int
    height: int
    colour: str
    brightness: str

    @property
    def shape(self) -> str:
        if self.width > self.height * 1.1:
            return "landscape"
        if self.height > self.width * 1.1:
            return "portrait"
        return "square"


@dataclass(frozen=True)
class Conversation:
    """The parts of a conversation the demo models react to."""

    prompt: str
    earlier_prompts: tuple[str, ...]
    # The pictures attached to the latest prompt
    pictures: tuple[Picture, ...] = ()

    @property
    def turn(self) -> int:
        return len(self.earlier_prompts) + 1

    @property
    def keywords(self) -> list[str]:
        return keywords(self.prompt)

    @property
    def earlier_topic(self) -> str:
        return topic(self.earlier_prompts[0]) if self.earlier_prompts else ""

    def pick(self, salt: str, choices: int) -> int:
        """A stable choice among `choices` variants, different per model (`salt`) and prompt."""
        seed = "\x1f".join((salt, *self.earlier_prompts, self.prompt)).encode()
        return int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") % choices


def keywords(text: str, limit: int = 6) -> list[str]:
    """The prompt's content words in order, as written (a sentence's capital is dropped)."""
    found: list[str] = []
    seen: set[str] = set()
    for match in _WORD.finditer(text):
        word = match.group(0).strip("'-")
        folded = word.lower()
        if len(word) < 3 or folded in _STOP_WORDS or folded in seen:
            continue
        if not text[: match.start()].strip() and not word.isupper():
            word = folded
        seen.add(folded)
        found.append(word)
        if len(found) == limit:
            break
    return found


def topic(text: str) -> str:
    words = keywords(text, limit=3)
    return " ".join(words) if words else "that"


def _number(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return f"{value.normalize():f}"


@dataclass(frozen=True)
class Calculation:
    left: str
    symbol: str
    right: str
    result: str

    @property
    def expression(self) -> str:
        return f"{self.left} {self.symbol} {self.right}"

    @property
    def check(self) -> str:
        """The inverse operation, which gives the left operand back."""
        inverse = {"+": "-", "-": "+", "*": "/", "/": "*"}[self.symbol]
        approximately = "≈" if self.symbol == "/" else "="
        return f"{self.result} {inverse} {self.right} {approximately} {self.left}"


def arithmetic(text: str) -> Calculation | None:
    """The first `a op b` in the text with its exact result (division to four places)."""
    match = _ARITHMETIC.search(text)
    if match is None:
        return None
    left, op, right = Decimal(match.group(1)), match.group(2).lower(), Decimal(match.group(3))
    symbol = {"plus": "+", "minus": "-", "times": "*", "x": "*", "×": "*", "÷": "/"}.get(op, op)
    symbol = "/" if symbol == "divided by" else symbol
    if symbol == "*" and right == 0:
        return None  # no inverse to check with
    try:
        if symbol == "+":
            result = left + right
        elif symbol == "-":
            result = left - right
        elif symbol == "*":
            result = left * right
        else:
            result = (left / right).quantize(Decimal("0.0001"))
    except (DivisionByZero, InvalidOperation):
        return None
    return Calculation(_number(left), symbol, _number(right), _number(result))


def code_language(text: str) -> str | None:
    """The programming language the prompt asks about, or None when it is not about code."""
    words = [w.lower() for w in _WORD.findall(text)]
    for word in words:
        if word in _CODE_WORDS:
            return _CODE_WORDS[word]
    if any(word in _CODE_HINTS for word in words):
        return "python"
    return None


def _is_greeting(conversation: Conversation) -> bool:
    words = [w.lower() for w in _WORD.findall(conversation.prompt)]
    return bool(words) and words[0] in _GREETINGS and len(words) <= 4


def _is_yes_no(conversation: Conversation) -> bool:
    words = _WORD.findall(conversation.prompt)
    return bool(words) and words[0].lower() in _YES_NO_OPENERS and "?" in conversation.prompt


_LANGUAGE_NAMES = {
    "python": ("Python", "function"),
    "javascript": ("JavaScript", "function"),
    "sql": ("SQL", "query"),
    "bash": ("Bash", "script"),
    "rust": ("Rust", "function"),
}


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _identifier(words: list[str], fallback: str) -> str:
    parts = [re.sub(r"[^a-z0-9]", "", w.lower()) for w in words]
    name = "_".join(p for p in parts if p)
    return name if name and not name[0].isdigit() else fallback


def _camel(identifier: str) -> str:
    head, *rest = identifier.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _code_sample(language: str, words: list[str]) -> str:
    # Names come from what the prompt is about, not from the words that made it a code question.
    words = [w for w in words if w.lower() not in _CODE_WORDS and w.lower() not in _CODE_HINTS]
    subject = words[0].lower() if words else "item"
    name = _identifier(words[:2], "unique_items")
    if language == "javascript":
        return (
            "```javascript\n"
            f"// Keep the first occurrence of each {subject} value, in order.\n"
            f"function {_camel(name)}(values) {{\n"
            "  const seen = new Set();\n"
            "  return values.filter((value) => {\n"
            "    if (seen.has(value)) return false;\n"
            "    seen.add(value);\n"
            "    return true;\n"
            "  });\n"
            "}\n"
            "```"
        )
    if language == "sql":
        plurals = [w for w in words if w.lower().endswith("s")]
        table = _identifier(plurals[:1], "items")
        return (
            "```sql\n"
            f"-- How many rows of {table} there are per category, largest first.\n"
            "SELECT category, COUNT(*) AS how_many\n"
            f"FROM {table}\n"
            "GROUP BY category\n"
            "ORDER BY how_many DESC;\n"
            "```"
        )
    if language == "bash":
        return (
            "```bash\n"
            "#!/usr/bin/env bash\n"
            "# Stop at the first error, and say which line failed.\n"
            "set -euo pipefail\n"
            "trap 'echo \"failed at line $LINENO\" >&2' ERR\n"
            f"for file in ./{subject}/*; do\n"
            '  echo "processing $file"\n'
            "done\n"
            "```"
        )
    if language == "rust":
        return (
            "```rust\n"
            f"/// Keep the first occurrence of each {subject} value, in order.\n"
            f"fn {name}<T: Eq + std::hash::Hash + Clone>(values: &[T]) -> Vec<T> {{\n"
            "    let mut seen = std::collections::HashSet::new();\n"
            "    values.iter().filter(|v| seen.insert((*v).clone())).cloned().collect()\n"
            "}\n"
            "```"
        )
    return (
        "```python\n"
        f"def {name}(values):\n"
        f'    """Keep the first occurrence of each {subject} value, in order."""\n'
        "    seen = set()\n"
        "    kept = []\n"
        "    for value in values:\n"
        "        if value not in seen:\n"
        "            seen.add(value)\n"
        "            kept.append(value)\n"
        "    return kept\n"
        "```"
    )


# ---------------------------------------------------------------- terse: one or two short lines


def terse(conversation: Conversation) -> str:
    words = conversation.keywords
    lead = "Still on that. " if conversation.turn > 1 else ""
    if _is_greeting(conversation):
        return "Hi. What do you need?"
    calc = arithmetic(conversation.prompt)
    if calc is not None:
        return f"{lead}{calc.result}."
    if _is_yes_no(conversation):
        verdict = ("Yes, usually.", "No, not in general.", "Sometimes; it depends.")
        return f"{lead}{verdict[conversation.pick('terse', 3)]}"
    language = code_language(conversation.prompt)
    if language is not None:
        label, noun = _LANGUAGE_NAMES[language]
        return f"{lead}Write one small {label} {noun}, test it on three inputs, done."
    if not words:
        return "Could you say a bit more?"
    variants = (
        f"{lead}Short version: {words[0]} is mostly about the basics. Start there.",
        f"{lead}Focus on {words[0]}; the rest follows.",
        f"{lead}{words[0].capitalize()}: keep it simple and check the result.",
    )
    return variants[conversation.pick("terse", len(variants))]


# ---------------------------------------------------------------- thorough: careful Markdown


def thorough(conversation: Conversation) -> str:
    words = conversation.keywords
    subject = " ".join(words[:3]) or "your question"
    first = words[0] if words else "the goal"
    second = words[1] if len(words) > 1 else "the constraints"
    third = words[2] if len(words) > 2 else "the edge cases"
    parts: list[str] = []
    calc = arithmetic(conversation.prompt)
    if conversation.turn > 1:
        parts.append(
            f"Building on the earlier question about **{conversation.earlier_topic}**, "
            f"here is how **{subject}** fits in."
        )
    elif calc is not None:
        parts.append("Let us work this out carefully.")
    elif _is_greeting(conversation):
        return (
            "Hello! I am happy to help. You can ask me, for example:\n\n"
            "- to **explain** a concept step by step,\n"
            "- to **write or review code** (I will include a runnable example),\n"
            "- to **compare options** and list their trade-offs.\n\n"
            "What would you like to start with?"
        )
    else:
        parts.append(f"Good question. Here is a careful answer about **{subject}**.")

    if calc is not None:
        parts.append(
            f"The result is **{calc.result}**.\n\n"
            "### Working\n"
            f"1. Read the expression: `{calc.expression}`.\n"
            f"2. Compute it exactly: `{calc.expression} = {calc.result}`.\n"
            f"3. Check with the inverse operation: `{calc.check}`."
        )
        return "\n\n".join(parts)

    language = code_language(conversation.prompt)
    parts.append(
        "### What matters\n"
        f"1. **Be precise about {first}.** Decide what a good result looks like before "
        "choosing a method.\n"
        f"2. **Check the assumptions about {second}.** Most surprises come from an assumption "
        "nobody wrote down.\n"
        f"3. **Consider {third}.** Empty inputs, very large inputs and unusual values deserve a "
        "thought each.\n"
        "4. **Verify the outcome.** Compare against a case you can work out by hand."
    )
    if language is not None:
        parts.append(
            f"### A small {_LANGUAGE_NAMES[language][0]} example\n"
            "A compact, readable starting point you can adapt:\n\n"
            f"{_code_sample(language, words)}\n\n"
            "Try it on an empty input, a single element and a case with repeated values."
        )
    if _is_yes_no(conversation):
        verdict = ("Usually yes", "Usually no", "It depends")
        parts.append(
            f"### Short answer\n**{verdict[conversation.pick('thorough', 3)]}**, "
            "with the caveats above."
        )
    parts.append(
        "### Summary\n"
        f"- Start from a clear definition of {first}.\n"
        f"- Make the assumptions about {second} explicit.\n"
        "- Test the result on small, hand-checked cases.\n\n"
        "If you tell me more about your situation, I can go into more detail."
    )
    return "\n\n".join(parts)


# ---------------------------------------------------------------- whimsical: chatty and sloppy


_WHIMSY_OPENERS = ("ooh", "ok so", "hmm", "oh fun", "right right right")
_WHIMSY_ASIDES = (
    "my neighbour's cat once sat on a keyboard and wrote better documentation than most of us",
    "this reminds me of a teapot i knew, very opinionated teapot",
    "fun fact: octopuses have three hearts, which is unrelated but important",
    "i read about this on a cereal box once, so you know it's reliable",
)
_WHIMSY_EMOJI = ("🐙", "🫖", "✨", "🦆", "🙃")


def whimsical(conversation: Conversation) -> str:
    words = conversation.keywords
    opener = _WHIMSY_OPENERS[conversation.pick("opener", len(_WHIMSY_OPENERS))]
    aside = _WHIMSY_ASIDES[conversation.pick("aside", len(_WHIMSY_ASIDES))]
    emoji = _WHIMSY_EMOJI[conversation.pick("emoji", len(_WHIMSY_EMOJI))]
    lead = "wait, we're still going?? love that. " if conversation.turn > 1 else ""
    if _is_greeting(conversation):
        return f"{lead}heyyy {emoji} what's up! ask me anything, i know at least 3 things"
    calc = arithmetic(conversation.prompt)
    if calc is not None:
        # Whimsy is confidently off by one: a demo needs a visibly worse answer to vote against.
        wrong = _number(Decimal(calc.result) + 1)
        return (
            f"{lead}{opener}, {calc.expression}... that's {wrong}! pretty sure. "
            f"numbers are more of a vibe anyway {emoji}"
        )
    subject = words[0] if words else "that"
    other = words[1] if len(words) > 1 else "stuff"
    language = code_language(conversation.prompt)
    if language is not None:
        return (
            f"{lead}{opener}, {language}! just do `for x in {subject}: print(x)` and "
            "see what happens lol. if it breaks, turn it off and on again. "
            f"(btw {aside}) {emoji}"
        )
    return (
        f"{lead}{opener}, {subject}! honestly {subject} is one of those things where "
        f"everybody has an opinon and nobody reads the manual. {other}? also a thing. "
        f"anyway, {aside}. the point is: try it, see what happens, and if it goes wrong "
        f"try it again but sideways {emoji} hope that helps!! (it mostly does)"
    )


# ---------------------------------------------------------------- plain: a sensible paragraph


def _picture_line(picture: Picture) -> str:
    return (
        f"a {picture.shape} picture of {picture.width}x{picture.height} pixels, mostly "
        f"{picture.brightness} {picture.colour}"
    )


def plain(conversation: Conversation) -> str:
    if conversation.pictures:
        seen = "; ".join(_picture_line(p) for p in conversation.pictures)
        return f"I see {seen}. " + _plain_text(conversation)
    return _plain_text(conversation)


def _plain_text(conversation: Conversation) -> str:
    words = conversation.keywords
    if _is_greeting(conversation):
        return "Hello. How can I help you today?"
    lead = (
        f"To follow up on what we discussed about {conversation.earlier_topic}: "
        if conversation.turn > 1
        else ""
    )
    calc = arithmetic(conversation.prompt)
    if calc is not None:
        return f"{lead}{calc.expression} equals {calc.result}."
    subject = " ".join(words[:2]) or "this"
    detail = words[2] if len(words) > 2 else "the details"
    text = (
        f"{lead}{_capitalised(subject)} is a broad subject, so here is a general answer. "
        "The most important step is to be clear about what you want to achieve, because "
        f"that decides which approach fits. After that, pay attention to {detail}, since "
        "that is where most practical problems appear. In most cases a simple approach works "
        "well, and you can refine it once you see the first results."
    )
    language = code_language(conversation.prompt)
    if language is not None:
        text += (
            f" In {_LANGUAGE_NAMES[language][0]}, write it as one small "
            f"{_LANGUAGE_NAMES[language][1]} with a clear name and try it "
            "on a couple of inputs before using it more widely."
        )
    if _is_yes_no(conversation):
        verdict = ("Generally yes. ", "Generally no. ")[conversation.pick("plain", 2)]
        text = verdict + _capitalised(text)
    return text


# ---------------------------------------------------------------- vision: describes pictures


def vision(conversation: Conversation) -> str:
    if not conversation.pictures:
        return (
            "I read pictures best: attach one and I will describe it. Meanwhile, in short: "
            + _plain_text(conversation)
        )
    count = len(conversation.pictures)
    lines = [f"You sent {count} picture{'s' if count > 1 else ''}. Here is what I see:", ""]
    for index, picture in enumerate(conversation.pictures, start=1):
        lines.append(
            f"{index}. A {picture.shape} image, {picture.width} by {picture.height} pixels, "
            f"dominated by {picture.brightness} {picture.colour} tones."
        )
    words = conversation.keywords
    if words:
        lines += [
            "",
            f"About your question on {' '.join(words[:3])}: judging by the colours "
            "alone, I cannot tell more than the overall look of the picture.",
        ]
    return "\n".join(lines)


Composer = Callable[[Conversation], str]
