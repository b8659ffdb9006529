"""What a published export went through, in words for its dataset card: its filters and its
redaction (the rules themselves are release.py's and redaction.py's)."""

from __future__ import annotations

from typing import Final

from arena.battles.integrity import REASONS
from arena.leaderboard.downloads import ExportScope

# What is done to every released prompt and answer before it leaves the arena, in order, as a
# reader of the dataset card should read it. The export code that does it names its step here,
# so the card never claims a redaction that does not run, nor hides one that does.
REDACTION_STEPS: Final[tuple[str, ...]] = (
    "Texts only from battles whose visitor was shown the release notice and did not delete "
    "them, and not from battles whose answer named its own model (release.py); the others "
    "keep their rows with empty conversations and text_status erased or withheld.",
    "Personal data replaced by typed placeholders ([EMAIL], [PHONE], [IP], [CARD], [IBAN], "
    "[NATIONAL_ID], [ADDRESS]) by arena/leaderboard/redaction.py, offline (phonenumbers, "
    "python-stdnum, ipaddress); names of people and places are not caught (docs/release.md "
    "says what else is not).",
)


def redaction_applied(*, conversations_released: bool) -> list[str]:
    """The redaction steps an export went through; empty means none."""
    return list(REDACTION_STEPS) if conversations_released else []


def redaction_summary(*, conversations_released: bool) -> str:
    steps = redaction_applied(conversations_released=conversations_released)
    if steps:
        return "; ".join(steps)
    if not conversations_released:
        return "none (the export holds no prompts or answers)"
    return "none: prompts and answers are published as the visitors and the models wrote them"


def export_filters(
    *, scope: ExportScope, conversations_released: bool, decisive_only: bool
) -> list[str]:
    """Which stored votes an export leaves out and what it leaves out of each, in plain words."""
    not_counted = "Every vote is stored, but one is not counted when " + "; or when ".join(
        REASONS.values()
    )
    if decisive_only:
        filters = [
            f"Counted votes only. {not_counted}.",
            "Anonymous battles only: the names were hidden until the vote.",
        ]
    else:
        filters = [
            "Counted votes, and two kinds of votes that are not counted, each marked so that a "
            "rater leaves it out: those of side-by-side battles, whose visitor chose the models "
            "(`anony: false`), and those held back for nothing but a prompt used more often "
            "than the duplicate-prompt limit (`dedup_tag` with `sampled: false`; "
            f"`arena ratings compute --keep-duplicates` rates them). {not_counted}.",
        ]
    filters.append(
        "No session, IP address or battle id; the voter appears only as `judge`, a salted hash."
    )
    if scope.until is not None:
        filters.append(f"Votes cast up to {scope.until.isoformat()} only (the snapshot's time).")
    if scope.exclude_models:
        filters.append(
            "Without the votes of models that snapshot left unrated: "
            + ", ".join(sorted(scope.exclude_models))
            + "."
        )
    if decisive_only:
        filters.append("Decisive votes only: ties and both-bad votes are left out.")
    filters.append(
        "Prompts and answers included (the operator set ARENA_RELEASE_CONVERSATIONS=true)."
        if conversations_released
        else "No prompts or answers (ARENA_RELEASE_CONVERSATIONS is false)."
    )
    return filters
