"""The demo judge: keyword rules that answer a judge request the way a language model would be
asked to, so that `make run` shows the judged categories working without any model. Its labels
are rough and its name (`demo-judge`) says so wherever the labels are shown."""

from __future__ import annotations

import json
import re
from typing import Final

from arena.judge.verdict import CRITERIA, quoted_part

DEMO_JUDGE_MODEL: Final = "demo-judge"

_MATH: Final = re.compile(
    r"\d\s*[-+*/^=]\s*\d|\b(solve|equation|integral|derivative|probability|prove|theorem|"
    r"calculate|compute|algebra|geometry|percent|factorial|prime|matrix|sum of)\b",
    re.IGNORECASE,
)
_CREATIVE: Final = re.compile(
    r"\b(write|compose|create|draft)\b.{0,40}\b(story|poem|haiku|limerick|lyrics|song|sonnet|"
    r"script|dialogue|fable|tale)\b",
    re.IGNORECASE | re.DOTALL,
)
_CONSTRAINTS: Final = re.compile(
    r"\b(in|under|at most|no more than|exactly|at least)\s+(\d+|one|two|three|four|five|six|"
    r"seven|eight|nine|ten)\s+(words|sentences|lines|"
    r"bullets|paragraphs|characters)\b|\b(bullet points?|numbered list|as json|in json|"
    r"table format|without using|do not use|don't use|must (include|contain|start|end)|"
    r"all (caps|lowercase))\b",
    re.IGNORECASE,
)
_REFUSAL: Final = re.compile(
    r"\b(I can(no|')t|I cannot|I won't|I will not|I'm sorry, but|I am sorry, but|"
    r"I'm unable to|I am unable to|I must decline)\b",
    re.IGNORECASE,
)
_TECHNICAL: Final = re.compile(
    r"```|\b(code|function|algorithm|database|python|javascript|sql|api|server|compiler|"
    r"protocol|physics|chemistry|biology|statistics|economics|law|medical|finance)\b",
    re.IGNORECASE,
)
_SOLVING: Final = re.compile(
    r"\b(how (do|can|should|would)|why|solve|fix|debug|design|plan|optimi[sz]e|improve|"
    r"compare|analy[sz]e|estimate)\b",
    re.IGNORECASE,
)
_ORIGINAL: Final = re.compile(r"\b(idea|original|invent|imagine|novel|creative|brainstorm)\b", re.I)
_PRACTICAL: Final = re.compile(
    r"\b(my|our|business|company|work|project|customer|team|budget|job|client|users?)\b", re.I
)


def demo_verdict(prompt: str, answers: tuple[str, str]) -> dict[str, object]:
    """The labels keyword rules give a prompt and its two answers."""
    sentences = len(re.findall(r"[.!?](\s|$)", prompt))
    technical = bool(_TECHNICAL.search(prompt))
    math = bool(_MATH.search(prompt))
    creative = bool(_CREATIVE.search(prompt))
    met = {
        "specificity": len(prompt) >= 40,
        "domain_knowledge": technical or math,
        "complexity": len(prompt) >= 200 or sentences >= 3,
        "problem_solving": bool(_SOLVING.search(prompt)) or math,
        "creativity": creative or bool(_ORIGINAL.search(prompt)),
        "technical_accuracy": technical or math,
        "real_world": bool(_PRACTICAL.search(prompt)),
    }
    return {
        "criteria": {name: met[name] for name in CRITERIA},
        "math": math,
        "instruction_following": bool(_CONSTRAINTS.search(prompt)),
        "creative_writing": creative,
        "refusal": any(_REFUSAL.search(answer[:400]) for answer in answers),
    }


def demo_judge_answer(request_text: str) -> str:
    """The demo judge's answer to a judge request (arena/judge/verdict.py's judge_messages)."""
    verdict = demo_verdict(
        quoted_part(request_text, "user_prompt"),
        (quoted_part(request_text, "answer_a"), quoted_part(request_text, "answer_b")),
    )
    return json.dumps(verdict)
