"""Turning leaderboard views into what is sent: HTML pages, CSV tables and JSON documents."""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import Final
from urllib.parse import quote, urlencode

from markupsafe import Markup

from arena.battles.integrity import REASONS, VoteCounts
from arena.battles.integrity_schemas import SamplingOut
from arena.judge.endpoint import JudgeName
from arena.leaderboard import plots
from arena.leaderboard.schemas import (
    FragilityOut,
    HistoryPointOut,
    LeaderboardOut,
    LeaderboardRowOut,
    MatricesOut,
    ModelOut,
    OpponentOut,
    SnapshotOut,
    StatusChangeOut,
    StyleCoefficientOut,
    UnratedOut,
)
from arena.leaderboard.service import BoardRow, BoardView, ModelView, SnapshotInfo, sort_rows
from arena.leaderboard.snapshots import (
    ALL,
    BT,
    BT_STYLE,
    BT_STYLE_BOOTSTRAP,
    ELO,
    METHOD_LABELS,
    STYLE_METHODS,
    category_label,
)
from arena.ratings.categories import JUDGED_CATEGORIES
from arena.ratings.views import (
    DEFAULT_MIN_PROMPT_TOKENS,
    EXCLUSION_LABELS,
    EXCLUSIONS,
    NO_SHORT,
)
from arena.spreadsheet_csv import Cell, csv_text
from arena.templating import templates

# The `arena ratings compute --method` of each table (a bootstrap table adds --bootstrap).
_CLI_METHODS: Final[dict[str, str]] = {
    ELO: "elo",
    BT_STYLE: "bt-style",
    BT_STYLE_BOOTSTRAP: "bt-style",
}
# How the page names each style element.
STYLE_ELEMENT_LABELS: Final[dict[str, str]] = {
    "tokens": "Answer length (tokens)",
    "headers": "Headers",
    "lists": "List items",
    "bold": "Bold spans",
}
# Columns whose first click sorts high to low.
DESCENDING_FIRST: Final = frozenset({"rating", "votes", "win_rate"})
LEADERBOARD_CSV_COLUMNS: Final[tuple[str, ...]] = (
    "rank",
    "model",
    "rating",
    "ci_lower",
    "ci_upper",
    "votes",
    "win_rate",
    "swap_votes",
    "first_place_votes",
    "organization",
    "license",
    "status",
    "activated_at",
    "paused_at",
    "retired_at",
    "rank_change",
)
TABLE_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("rank", "Rank (UB)"),
    ("model", "Model"),
    ("rating", "Rating"),
    ("ci", "95% CI"),
    ("votes", "Votes"),
    ("win_rate", "Win rate"),
    ("holds", "Above the next"),
    ("organization", "Organisation"),
    ("license", "Licence"),
    ("status", "Status"),
)


def iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat()


def day(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d")


def when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def _number(value: float | None) -> float | None:
    # A float, not its text: the CSV writer keeps every digit and leaves numbers unquoted
    return None if value is None else float(value)


def snapshot_out(info: SnapshotInfo | None) -> SnapshotOut | None:
    return None if info is None else SnapshotOut.model_validate(info)


def row_out(row: BoardRow) -> LeaderboardRowOut:
    return LeaderboardRowOut.model_validate(row.model_dump(exclude={"status_since"}))


def fragility_out(view: BoardView) -> FragilityOut | None:
    stored = view.extras.get("fragility")
    return None if stored is None else FragilityOut.model_validate(stored)


def style_coefficients_out(view: BoardView) -> list[StyleCoefficientOut] | None:
    stored = view.extras.get("style_coefficients")
    if stored is None:
        return None
    return [StyleCoefficientOut.model_validate(c) for c in stored]


def leaderboard_out(view: BoardView) -> LeaderboardOut:
    snapshot = view.snapshot
    return LeaderboardOut(
        method=view.method,
        category=view.category,
        exclude=list(view.choice.exclude),
        show_retired=view.choice.show_retired,
        compare=view.choice.compare,
        compared_snapshot=snapshot_out(view.compared),
        exclusions=list(view.exclusions),
        dedup=not view.choice.keep_duplicates,
        dedup_off_stored=view.duplicates_stored,
        params={} if snapshot is None else snapshot.params,
        vote_set_hash=None if snapshot is None else snapshot.vote_set_hash,
        n_battles=0 if snapshot is None else snapshot.n_votes,
        models=[row_out(r) for r in view.rows],
        unrated=[UnratedOut(**u) for u in view.unrated],
        snapshot=snapshot_out(snapshot),
        votes_total=view.votes_total,
        methods=list(view.methods),
        categories=view.categories,
        fragility=fragility_out(view),
        style_coefficients=style_coefficients_out(view),
        battles_without_style=view.extras.get("battles_without_style")
        if view.method in STYLE_METHODS
        else None,
    )


def leaderboard_csv(view: BoardView) -> str:
    """The table's rows; swap_votes holds each row against the next, first_place_votes (on the
    leader's row only) the leader against every challenger."""
    fragility = fragility_out(view)
    first = None if fragility is None else fragility.first_place
    lines: list[list[Cell]] = [list(LEADERBOARD_CSV_COLUMNS)]
    for row in view.rows:
        lines.append(
            [
                row.rank,
                row.model,
                _number(row.rating),
                _number(row.ci_lower),
                _number(row.ci_upper),
                row.votes,
                _number(row.win_rate),
                row.swap_votes,
                first.votes if first is not None and first.above == row.model else None,
                row.organization,
                row.license,
                row.status,
                iso(row.activated_at),
                iso(row.paused_at),
                iso(row.retired_at),
                row.rank_change,
            ]
        )
    return csv_text(lines)


def matrices_out(view: BoardView) -> MatricesOut:
    extras = view.extras
    return MatricesOut(
        method=view.method,
        category=view.category,
        snapshot=snapshot_out(view.snapshot),
        models=list(extras.get("models", [])),
        win_fraction=list(extras.get("win_fraction", [])),
        battle_count=list(extras.get("battle_count", [])),
        predicted_win=list(extras.get("predicted_win", [])),
        battles_drawn=dict(extras.get("battles_drawn", {})),
        sampling_share=dict(extras.get("sampling_share", {})),
    )


def matrix_csv(view: BoardView, table: str) -> str:
    extras = view.extras
    if table == "sampling-share":
        drawn = extras.get("battles_drawn", {})
        shares = extras.get("sampling_share", {})
        lines: list[list[Cell]] = [["model", "battles_drawn", "sampling_share"]]
        lines.extend([name, drawn.get(name, 0), _number(shares[name])] for name in sorted(shares))
        return csv_text(lines)
    key = {
        "win-fraction": "win_fraction",
        "battle-count": "battle_count",
        "predicted-win": "predicted_win",
    }[table]
    models = list(extras.get("models", []))
    lines = [["model", *models]]
    for name, values in zip(models, extras.get(key, []), strict=False):
        lines.append([name, *values])
    return csv_text(lines)


def model_out(view: ModelView) -> ModelOut:
    facts = view.facts
    return ModelOut(
        **facts.model_dump(),
        method=view.method,
        current=None if view.row is None else row_out(view.row),
        unrated_reason=view.unrated_reason,
        battles_drawn=view.battles_drawn,
        sampling_share=view.sampling_share,
        named_votes=view.named_votes,
        vote_share=view.vote_share,
        history=[HistoryPointOut.model_validate(h) for h in view.history],
        opponents=[OpponentOut.model_validate(o) for o in view.opponents],
        status_history=[StatusChangeOut.model_validate(s) for s in view.status_history],
        snapshot=snapshot_out(view.snapshot),
    )


# ------------------------------------------------------------------ HTML


def status_dates(status: str, since: datetime | None, activated_at: datetime | None) -> str:
    """'since 2025-01-02', or for a retired model 'on 2025-03-04, active from 2025-01-02'."""
    if since is None:
        return ""
    if status == "retired":
        active = f", active from {day(activated_at)}" if activated_at is not None else ""
        return f"on {day(since)}{active}"
    return f"since {day(since)}"


def _query(**values: str | None) -> str:
    kept = {k: v for k, v in values.items() if v and not (k == "category" and v == ALL)}
    kept = {k: v for k, v in kept.items() if not (k == "method" and v == BT)}
    return ("?" + urlencode(kept)) if kept else ""


def board_query(view: BoardView, **changed: str | None) -> str:
    """The query of this table's URL (category, method and view), with some values changed."""
    choice = view.choice
    values: dict[str, str | None] = {
        "category": view.category,
        "method": view.method,
        "exclude": ",".join(choice.exclude),
        "retired": "show" if choice.show_retired else None,
        "compare": choice.compare,
        "dedup": "off" if choice.keep_duplicates else None,
    }
    return _query(**{**values, **changed})


def _toggled(exclude: tuple[str, ...], exclusion: str) -> str:
    chosen = set(exclude) ^ {exclusion}
    return ",".join(e for e in EXCLUSIONS if e in chosen)


def model_href(name: str) -> str:
    return "/models/" + quote(name, safe="")


def holds_text(votes: int | None) -> str:
    """'holds unless 12 votes are removed' (see fragility.py for what that means)."""
    if votes is None:
        return "no removal of votes found that swaps them"
    return f"holds unless {votes:,} vote{' is' if votes == 1 else 's are'} removed"


def _holds_cell(row: BoardRow, below: str | None, method: str, computed: bool) -> tuple[str, str]:
    """The text and title of a row's 'Above the next' cell."""
    if below is None:
        return "—", "the last row"
    if method == ELO:
        return "—", "online Elo has no likelihood to weigh votes by; see a Bradley-Terry table"
    if not computed:
        return "—", "not computed for this snapshot"
    return (
        holds_text(row.swap_votes),
        f"{row.model} stays above {below} unless that many votes are removed"
        " (the fewest found, checked by refitting; the JSON names them)",
    )


def _ci_text(row: BoardRow) -> tuple[str, str]:
    if row.ci_lower is None or row.ci_upper is None:
        return "—", "no interval for this method"
    plus = row.ci_upper - row.rating
    minus = row.rating - row.ci_lower
    return f"+{plus:.1f} / −{minus:.1f}", f"{row.ci_lower:.1f} to {row.ci_upper:.1f}"


def reproduce_command(snapshot: SnapshotInfo) -> str:
    """The `arena ratings compute` call that re-rates this snapshot's download to its numbers."""
    params = snapshot.params
    parts = [
        "arena ratings compute",
        f"--battles battles-snapshot-{snapshot.id}.jsonl",
        f"--method {_CLI_METHODS.get(snapshot.method, 'bt')}",
    ]
    if params.get("style_convention") and params["style_convention"] != "fastchat":
        parts.append(f"--style-convention {params['style_convention']}")
    if params.get("bootstrap_rounds"):
        parts += [f"--bootstrap {params['bootstrap_rounds']}", f"--seed {params.get('seed')}"]
    anchor = params.get("anchor")
    if anchor:
        parts.append("--anchor " + shlex.quote(f"{anchor['model']}={anchor['rating']}"))
    if params.get("reweighted"):
        parts.append("--reweighted")
    if snapshot.category != ALL:
        parts.append("--category " + shlex.quote(snapshot.category))
    exclusions = [str(e) for e in params.get("exclusions") or ()]
    if exclusions:
        # The view's battles, left out by the same mask the recompute applied; the export
        # carries what it reads (prompt_tokens, the judge's category_tag).
        parts.append("--exclude " + shlex.quote(",".join(exclusions)))
        if NO_SHORT in exclusions:
            cut = int(params.get("min_prompt_tokens", DEFAULT_MIN_PROMPT_TOKENS))
            parts.append(f"--min-prompt-tokens {cut}")
    if params.get("keep_duplicates"):
        # The download holds the held-back duplicates (dedup_tag sampled: false); the reader
        # leaves them out unless told.
        parts.append("--keep-duplicates")
    parts.append("--format json")
    return " ".join(parts)


def judged_categories_note(categories: list[str], judge: JudgeName | None) -> str | None:
    """Why the judged categories are missing from the picker (None when they are there)."""
    if any(c in JUDGED_CATEGORIES for c in categories):
        return None
    names = ", ".join(category_label(c) for c in JUDGED_CATEGORIES[:-1])
    names += f" and {category_label(JUDGED_CATEGORIES[-1])}"
    if judge is None:
        return (
            f"{names} are not offered: those categories are labelled by an LLM judge, and this"
            " arena has none (an operator can name one with `arena judge set`)."
        )
    return (
        f"{names} are not offered yet: the judge ({_judge_text(judge.model, judge.demo)}) has"
        " not labelled any counted battle so far; they appear with the next recompute after"
        " it has."
    )


def _judge_text(model: str, demo: bool) -> str:
    return f"{model}, the demo judge: keyword rules, not an LLM" if demo else model


def judged_by_note(view: BoardView, judge: JudgeName | None) -> str | None:
    """Which judge put the battles of a judged category's table in it."""
    if view.category not in JUDGED_CATEGORIES:
        return None
    judged_by = view.extras.get("judged_by") or {}
    if not judged_by:
        return None
    demo = judge is not None and judge.demo
    parts = []
    for name, count in judged_by.items():
        shown = str(name)
        if demo and judge is not None and shown.startswith(f"{judge.model} / "):
            shown = f"{shown} (the demo judge: keyword rules, not an LLM)"
        parts.append(f"{shown}: {int(count):,} battle{'' if int(count) == 1 else 's'}")
    return "Battles put in this category by the judge " + "; ".join(parts) + "."


def _bounds(lower: float | None, upper: float | None, digits: int) -> str:
    if lower is None or upper is None:
        return "—"
    return f"{lower:.{digits}f} to {upper:.{digits}f}"


def style_row(c: StyleCoefficientOut) -> dict[str, str]:
    """One line of the page's style table: the effect in rating points and as an odds ratio."""
    return {
        "element": c.element,
        "label": STYLE_ELEMENT_LABELS.get(c.element, c.element),
        "points": f"{c.rating_points:+.1f}",
        "points_ci": _bounds(c.rating_points_lower, c.rating_points_upper, 1),
        "odds": f"×{c.odds_ratio:.3f}",
        "odds_ci": _bounds(c.odds_ratio_lower, c.odds_ratio_upper, 3),
        "sd": f"{c.feature_sd:.3f}",
    }


def render_leaderboard(
    view: BoardView,
    *,
    sort: str,
    descending: bool,
    vote_counts: VoteCounts | None = None,
    sampling: SamplingOut | None = None,
    judge: JudgeName | None = None,
    duplicate_limit: int,
) -> str:
    snapshot = view.snapshot
    if sort == "rank":
        rows = list(reversed(view.rows)) if descending else list(view.rows)
    else:
        rows = sort_rows(view.rows, sort, descending)
    headers = []
    columns = list(TABLE_COLUMNS)
    if view.choice.compare is not None:
        columns.insert(1, ("rank_change", f"Δ rank vs {view.choice.compare}"))
    for key, label in columns:
        sort_key = {"ci": None, "holds": None, "rank_change": None}.get(key, key)
        if sort_key is None:
            headers.append({"label": label, "href": None, "aria_sort": None, "key": key})
            continue
        current = sort_key == sort
        next_desc = (not descending) if current else sort_key in DESCENDING_FIRST
        headers.append(
            {
                "label": label,
                "key": key,
                "href": board_query(view, sort=sort_key, order="desc" if next_desc else "asc"),
                "aria_sort": ("descending" if descending else "ascending") if current else None,
            }
        )
    fragility = fragility_out(view)
    below = {a.model: b.model for a, b in zip(view.rows, view.rows[1:], strict=False)}
    table = []
    for row in rows:
        ci, ci_title = _ci_text(row)
        holds, holds_title = _holds_cell(
            row, below.get(row.model), view.method, fragility is not None
        )
        table.append(
            {
                "row": row,
                "href": model_href(row.model) + _query(method=view.method),
                "ci": ci,
                "ci_title": ci_title,
                "holds": holds,
                "holds_title": holds_title,
                "status_dates": status_dates(row.status, row.status_since, row.activated_at),
            }
        )
    extras = view.extras
    plot_points = [plots.RatingPoint(r.model, r.rating, r.ci_lower, r.ci_upper) for r in view.rows]
    models = list(extras.get("models", []))
    shares = sorted(extras.get("sampling_share", {}).items(), key=lambda item: (-item[1], item[0]))
    figures = {
        "ratings": plots.ratings_plot(plot_points, title="Ratings with 95% intervals"),
        "win_fraction": plots.heatmap(
            models,
            extras.get("win_fraction", []),
            title="Share of decisive battles the row model won against the column model",
            kind="fraction",
        ),
        "battle_count": plots.heatmap(
            models,
            extras.get("battle_count", []),
            title="Battles between each two models",
            kind="count",
        ),
        "sampling_share": plots.share_plot(
            shares, title="Share of battles each model was drawn into"
        ),
    }
    downloads = [
        ("Leaderboard CSV", "/leaderboard.csv"),
        ("Leaderboard JSON", "/api/leaderboard"),
        ("Plot tables JSON", "/api/leaderboard/matrices"),
        ("Win fractions CSV", "/leaderboard/win-fraction.csv"),
        ("Battle counts CSV", "/leaderboard/battle-count.csv"),
        ("Sampling shares CSV", "/leaderboard/sampling-share.csv"),
    ]
    query = board_query(view)
    style = style_coefficients_out(view)
    counted_now = vote_counts.counted if vote_counts is not None else view.votes_total
    cast_now = vote_counts.total if vote_counts is not None else view.votes_total
    newer_votes = max(0, counted_now - view.votes_total) if snapshot is not None else 0
    return templates.get_template("leaderboard.html").render(
        reproduce=None if snapshot is None else reproduce_command(snapshot),
        nav="leaderboard",
        view=view,
        snapshot=snapshot,
        method_label=METHOD_LABELS.get(view.method, view.method),
        category_name=category_label(view.category),
        categories=[(c, category_label(c), board_query(view, category=c)) for c in view.categories],
        methods=[(m, METHOD_LABELS.get(m, m), board_query(view, method=m)) for m in view.methods],
        exclusions=[
            (
                e,
                EXCLUSION_LABELS[e],
                e in view.choice.exclude,
                board_query(view, exclude=_toggled(view.choice.exclude, e)),
            )
            for e in view.exclusions
        ],
        retired_href=board_query(view, retired=None if view.choice.show_retired else "show"),
        dedup_href=board_query(view, dedup=None if view.choice.keep_duplicates else "off"),
        duplicate_limit=duplicate_limit,
        compares=[
            (m, METHOD_LABELS.get(m, m), board_query(view, compare=m))
            for m in view.methods
            if m != view.method
        ],
        compare_off_href=board_query(view, compare=None),
        compare_label=METHOD_LABELS.get(view.choice.compare or "", view.choice.compare),
        headers=headers,
        table=table,
        figures={k: Markup(v) for k, v in figures.items()},
        heatmap_limit=min(len(models), plots.HEATMAP_MODELS),
        n_models=len(models),
        downloads=[(label, href + query) for label, href in downloads],
        data_downloads=[
            ("Battles (JSON Lines)", "/battles.jsonl"),
            ("Battles (CSV)", "/battles.csv"),
        ],
        first_place=None if fragility is None else fragility.first_place,
        holds_text=holds_text,
        style_rows=None if style is None else [style_row(c) for c in style],
        battles_without_style=int(view.extras.get("battles_without_style") or 0),
        vote_counts=vote_counts,
        # The table is as of its snapshot; the vote counts are read when the page is built.
        counted_now=counted_now,
        cast_now=cast_now,
        newer_votes=newer_votes,
        reasons=REASONS,
        sampling=sampling,
        judged_note=judged_categories_note(view.categories, judge),
        judged_by=judged_by_note(view, judge),
        when=when,
        day=day,
        model_href=model_href,
    )


def render_model(view: ModelView) -> str:
    facts = view.facts
    history = plots.history_plot(
        [plots.HistoryPoint(h.at, h.rating, h.ci_lower, h.ci_upper) for h in view.history],
        title=f"Rating of {facts.name} over time",
    )
    ci = _ci_text(view.row) if view.row is not None else ("—", "")
    return templates.get_template("model.html").render(
        nav="leaderboard",
        view=view,
        facts=facts,
        row=view.row,
        ci=ci,
        status=f"{facts.status} "
        + status_dates(facts.status, facts.status_since, facts.activated_at),
        method_label=METHOD_LABELS.get(view.method, view.method),
        methods=[(m, METHOD_LABELS.get(m, m), _query(method=m)) for m in view.methods],
        history_svg=Markup(history),
        model_href=model_href,
        json_href="/api/leaderboard/models/"
        + quote(facts.name, safe="")
        + _query(method=view.method),
        when=when,
        day=day,
    )


def render_model_missing(name: str) -> str:
    return templates.get_template("model_missing.html").render(nav="leaderboard", name=name)


def render_error(message: str, *, status_code: int) -> str:
    return templates.get_template("leaderboard_error.html").render(
        nav="leaderboard", message=message, status_code=status_code
    )
