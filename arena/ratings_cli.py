"""`arena ratings compute`: a leaderboard from a battles file or the counted votes."""

from __future__ import annotations

import enum
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from arena.ratings import Leaderboard
    from arena.ratings.compute import Progress as ProgressCallback

ratings_app = typer.Typer(
    help="Elo and Bradley-Terry ratings with confidence intervals.", no_args_is_help=True
)
err_console = Console(stderr=True)

# Categories whose filters read the battles' text (or the tags stored from it).
_TEXT_CATEGORIES = ("coding", "long")


class OutputFormat(enum.StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class MethodChoice(enum.StrEnum):
    bt = "bt"
    elo = "elo"
    bt_style = "bt-style"


class StyleConventionChoice(enum.StrEnum):
    fastchat = "fastchat"
    arena_rank = "arena-rank"


def _database_battles(
    category: str, *, measure_prompts: bool = False, with_duplicates: bool = False
) -> pd.DataFrame:
    """The counted votes from the database named by ARENA_DATABASE_URL, read-only; with
    `with_duplicates`, the votes held back beyond the duplicate-prompt limit too, marked in
    DUPLICATE_COLUMN."""
    from sqlalchemy.orm import Session

    from arena.config import Settings
    from arena.db import make_sync_engine
    from arena.leaderboard.battles_source import load_counted_battles

    settings = Settings()
    engine = make_sync_engine(settings.database_url)
    try:
        with Session(engine) as session:
            needs_text = (
                category in _TEXT_CATEGORIES or category.startswith("language:") or measure_prompts
            )
            # Tags worked out here for untagged battles are not kept: this command only reads.
            battles = load_counted_battles(
                session, tag_missing=needs_text, with_duplicates=with_duplicates
            )
            session.rollback()
            return battles
    finally:
        engine.dispose()


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[ProgressCallback | None]:
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("bootstrap"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("bootstrap", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def _format_number(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _csv(board: Leaderboard) -> str:
    from arena.ratings import LEADERBOARD_COLUMNS
    from arena.spreadsheet_csv import Cell, csv_text

    # Model names come from whatever battles file was given, so they are text a spreadsheet
    # could run; numbers go in as numbers (a missing interval bound as an empty cell).
    models: list[dict[str, Cell]] = board.to_json_dict()["models"]
    return csv_text(
        [list(LEADERBOARD_COLUMNS), *([m[c] for c in LEADERBOARD_COLUMNS] for m in models)]
    )


def _table(board: Leaderboard, source: str) -> Table:
    params = board.params
    interval = params.get("interval")
    caption = (
        f"{board.method} · {board.n_battles:,} battles from {source} · category"
        f" {params.get('category')}"
        + (f" · without {', '.join(params['exclusions'])}" if params.get("exclusions") else "")
        + (
            " · with the votes held back beyond the duplicate-prompt limit"
            if params.get("keep_duplicates")
            else ""
        )
        + f" · intervals {interval or 'none'}"
        + (f" ({params['bootstrap_rounds']} rounds)" if interval == "bootstrap" else "")
        + (
            f" · anchor {params['anchor']['model']} = {params['anchor']['rating']:g}"
            if params.get("anchor")
            else ""
        )
        + f" · votes {board.vote_set_hash[:12]}"
    )
    table = Table(caption=caption, caption_justify="left")
    table.add_column("Rank", justify="right")
    table.add_column("Model")
    table.add_column("Rating", justify="right")
    confidence = params.get("confidence") or 0.95
    table.add_column(f"{confidence:.0%} CI", justify="right")
    table.add_column("Votes", justify="right")
    table.add_column("Win rate", justify="right")
    for row in board.rows:
        interval_text = (
            ""
            if row.ci_lower is None or row.ci_upper is None
            else f"+{row.ci_upper - row.rating:.1f} / -{row.rating - row.ci_lower:.1f}"
        )
        table.add_row(
            str(row.rank),
            row.model,
            _format_number(row.rating),
            interval_text,
            f"{row.votes:,}",
            "" if row.win_rate is None else f"{row.win_rate:.1%}",
        )
    return table


def _style_table(board: Leaderboard) -> Table:
    params = board.params
    points = float(params["scale"]) / math.log(float(params["base"]))
    confidence = params.get("confidence") or 0.95
    caption = (
        f"convention {params['style_convention']} (reg {params['style_reg']:g})"
        f" · coefficient = log-odds per standard deviation of (a - b) / (a + b + 1)"
        f" · points = coefficient x {points:.1f}"
        + (
            f" · {params['battles_without_style']:,} battles without style left out"
            if params.get("battles_without_style")
            else ""
        )
    )
    table = Table(title="Style coefficients", caption=caption, caption_justify="left")
    table.add_column("Element")
    table.add_column("Coefficient", justify="right")
    table.add_column(f"{confidence:.0%} CI", justify="right")
    table.add_column("Rating points", justify="right")
    table.add_column("Odds x per sd", justify="right")
    for row in board.style_coefficients or ():
        data = row.to_json_dict(points)
        table.add_row(
            row.element,
            f"{row.coefficient:+.4f}",
            f"[{row.ci_lower:+.4f}, {row.ci_upper:+.4f}]"
            if row.ci_lower is not None and row.ci_upper is not None
            else "",
            f"{data['rating_points']:+.1f}",
            f"{data['odds_ratio']:.3f}",
        )
    return table


@ratings_app.command("compute")
def compute(
    battles_file: Annotated[
        Path | None,
        typer.Option(
            "--battles",
            help="A FastChat clean-battle file (JSON list, JSON Lines, or CSV or Parquet by its"
            " suffix);"
            " without it, the counted votes in the database (ARENA_DATABASE_URL).",
            dir_okay=False,
        ),
    ] = None,
    method: Annotated[
        MethodChoice,
        typer.Option(
            help="bt: Bradley-Terry maximum likelihood; elo: online Elo; bt-style: Bradley-Terry"
            " controlled for answer length, headers, lists and bold (needs conv_metadata).",
        ),
    ] = MethodChoice.bt,
    bootstrap: Annotated[
        int | None,
        typer.Option(
            help="Bootstrap rounds for the intervals. Without it: sandwich intervals for bt,"
            " none for elo.",
            min=0,
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the bootstrap.")] = None,
    anchor: Annotated[
        str | None,
        typer.Option(
            help="MODEL=RATING: shift the table so that MODEL sits at RATING"
            " (FastChat: mixtral-8x7b-instruct-v0.1=1114).",
        ),
    ] = None,
    category: Annotated[
        str,
        typer.Option(
            help="all, coding, long, multi-turn, vision, language:NAME (e.g. language:English),"
            " or a judged one: hard, math, instruction-following, creative-writing (needs the"
            " judge's labels: category_tag, as the arena's exports and FastChat's files carry)."
        ),
    ] = "all",
    exclude: Annotated[
        str | None,
        typer.Option(
            help="A leaderboard view: leave out ties, short (first prompt under"
            " --min-prompt-tokens tokens; needs prompt_tokens or the prompt) and/or refusals (a"
            " judge's refusal label), comma-separated, e.g. ties,short,refusals.",
        ),
    ] = None,
    min_prompt_tokens: Annotated[
        int | None,
        typer.Option(
            help="With --exclude short: a first prompt of fewer tokens is short. Default 5"
            " (FastChat's); an arena's tables use its ARENA_SHORT_PROMPT_TOKENS, which their"
            " reproduce command names.",
            min=1,
        ),
    ] = None,
    reweighted: Annotated[
        bool,
        typer.Option(
            "--reweighted", help="Weigh each pair by 1 / max(its battles, 50), as arena-rank can."
        ),
    ] = False,
    style_convention: Annotated[
        StyleConventionChoice,
        typer.Option(
            help="bt-style only. fastchat: ridge 0.5 on ratings and coefficients of the summed"
            " log-likelihood (FastChat's compute_style_control); arena-rank: ridge 1.0 on the"
            " coefficients of the mean log-likelihood (arena-rank's ContextualBradleyTerry).",
        ),
    ] = StyleConventionChoice.fastchat,
    style_reg: Annotated[
        float | None,
        typer.Option(help="bt-style only: the ridge strength, instead of the convention's.", min=0),
    ] = None,
    keep_duplicates: Annotated[
        bool,
        typer.Option(
            "--keep-duplicates",
            help="Rate the votes held back beyond the duplicate-prompt limit too (dedup_tag"
            " sampled: false; left out by default, as FastChat's deduplicated leaderboard and the"
            " arena's tables leave them out).",
        ),
    ] = False,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="table, json or csv, on standard output.")
    ] = OutputFormat.table,
) -> None:
    """Compute a leaderboard: ratings, 95% intervals, rank (upper bound), votes, win rate."""
    # Imported here so that the other `arena` commands start without pandas and scipy.
    from arena.ratings import (
        InvalidBattles,
        RatingsError,
        compute_leaderboard,
        parse_anchor,
        read_battles_file,
    )
    from arena.ratings.views import (
        DEFAULT_MIN_PROMPT_TOKENS,
        NO_SHORT,
        view_exclusions,
        view_key,
        view_mask,
        view_params,
    )

    if method is not MethodChoice.bt_style and (
        style_reg is not None or style_convention is not StyleConventionChoice.fastchat
    ):
        err_console.print(
            "[red]error:[/red] --style-convention and --style-reg apply to --method bt-style only."
        )
        raise typer.Exit(2)
    try:
        anchor_pair = parse_anchor(anchor) if anchor is not None else None
        view = view_key((exclude or "").split(","), keep_duplicates=keep_duplicates)
        if min_prompt_tokens is not None and NO_SHORT not in view_exclusions(view):
            raise InvalidBattles("--min-prompt-tokens applies to --exclude short only.")
        cut = DEFAULT_MIN_PROMPT_TOKENS if min_prompt_tokens is None else min_prompt_tokens
        encoded = None
        if battles_file is not None:
            loaded = read_battles_file(battles_file, keep_duplicates=keep_duplicates)
            battles, source, encoded = loaded.battles, str(battles_file), loaded.encoded
            if loaded.dropped_non_anonymous:
                err_console.print(
                    f"left out {loaded.dropped_non_anonymous:,} non-anonymous battle(s)"
                    " (anony: false), as FastChat does"
                )
            if loaded.dropped_duplicates:
                err_console.print(
                    f"left out {loaded.dropped_duplicates:,} vote(s) held back beyond the"
                    " duplicate-prompt limit (dedup_tag sampled: false); --keep-duplicates rates"
                    " them"
                )
        else:
            measure = NO_SHORT in view_exclusions(view)
            battles = _database_battles(
                category, measure_prompts=measure, with_duplicates=keep_duplicates
            )
            source = "the database"
            if battles.empty:
                err_console.print(
                    "[red]error:[/red] the database has no counted votes yet; pass --battles FILE"
                    " to rate a battles file."
                )
                raise typer.Exit(2)
        if view:
            # The recompute's own mask (arena/leaderboard/snapshots.py), so a view's table is
            # re-rated from exactly the battles it kept. Held-back duplicates reach here only
            # when the view keeps them: both readers leave them out otherwise.
            kept = view_mask(battles, view, min_prompt_tokens=cut)
            if not kept.all():
                battles = battles.loc[kept].reset_index(drop=True)
                encoded = None  # it codes every row read
            if battles.empty:
                raise InvalidBattles(f"the view {view} leaves no battles to rate.")
        show_progress = bootstrap is not None and bootstrap > 0 and sys.stdout.isatty()
        with _progress_bar(show_progress) as progress:
            board = compute_leaderboard(
                battles,
                method=method.value,
                encoded=encoded,
                bootstrap_rounds=bootstrap,
                seed=seed,
                anchor=anchor_pair,
                reweighted=reweighted,
                category=category,
                progress=progress,
                style_convention=style_convention.value,
                style_reg=style_reg,
            )
        if view:
            shown = view_params(view, min_prompt_tokens=cut)
            board = replace(board, params={**board.params, **shown})
    except RatingsError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None

    if output_format is OutputFormat.json:
        typer.echo(json.dumps(board.to_json_dict(), indent=2, allow_nan=False))
    elif output_format is OutputFormat.csv:
        typer.echo(_csv(board), nl=False)
    else:
        Console().print(_table(board, source))
        if board.style_coefficients is not None:
            Console().print(_style_table(board))


@ratings_app.command("recompute")
def recompute() -> None:
    """Store fresh leaderboard snapshots now, as the server's background job does."""
    from arena.config import Settings
    from arena.leaderboard.snapshots import RecomputeConfig, run_recompute
    from arena.ratings import RatingsError

    try:
        outcome = run_recompute(RecomputeConfig.from_settings(Settings()))
    except RatingsError as exc:
        err_console.print(f"[red]error:[/red] {exc} The last good snapshots stay in place.")
        raise typer.Exit(2) from None
    if not outcome.ran:
        err_console.print("another worker is recomputing right now; its snapshots will do")
        raise typer.Exit(1)
    Console().print(
        f"stored {outcome.stored} snapshot(s) from {outcome.n_votes:,} counted votes"
        f" in {outcome.seconds:.2f} s"
    )
    if outcome.failed:
        err_console.print(
            f"[red]error:[/red] categories {', '.join(outcome.failed)} failed (see the log);"
            " their last good snapshots stay in place"
        )
        raise typer.Exit(1)
