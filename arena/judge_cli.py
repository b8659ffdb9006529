"""`arena judge`: name the judge of the judged categories, see its work, relabel."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from arena.audit import cli_actor, record_action
from arena.config import Settings
from arena.db import in_one_transaction
from arena.errors import ArenaError
from arena.judge import labels
from arena.judge.endpoint import judge_name, set_judge, unset_judge
from arena.judge.verdict import PROMPT_VERSION
from arena.registry.keys import KeyRing

judge_app = typer.Typer(
    help="The LLM judge that labels battles for the judged categories (Hard Prompts, Math, ...).",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def _in_session(
    settings: Settings, work: Callable[[AsyncSession], Awaitable[T]], *, writes: bool = True
) -> T:
    try:
        return asyncio.run(in_one_transaction(settings.database_url, work, writes=writes))
    except ArenaError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(2) from None


@judge_app.command("set")
def judge_set(
    base_url: Annotated[
        str, typer.Option(help="OpenAI-compatible base URL, e.g. https://api.example.com/v1")
    ],
    model: Annotated[str, typer.Option(help="The model id the endpoint expects")],
    api_key_env: Annotated[
        str | None, typer.Option(help="Name of an environment variable holding the API key")
    ] = None,
) -> None:
    """Name the judge (it replaces any other, the demo judge included). The judge is sent the
    first prompt and the first answers of every counted battle."""
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            err_console.print(f"[red]error:[/red] environment variable {api_key_env} is empty")
            raise typer.Exit(2)
    settings = Settings()
    keys = KeyRing.from_settings(settings)

    async def work(session: AsyncSession) -> str:
        judge = await set_judge(
            session,
            base_url=base_url,
            model=model,
            api_key=api_key,
            keys=keys,
            allow_private=settings.allow_private_endpoints,
            actor=cli_actor(),
        )
        return f"{judge.model} at {judge.base_url}"

    console.print(f"judge set: {_in_session(settings, work)}", markup=False, highlight=False)
    console.print(
        "Battles labelled by an earlier judge keep their labels; `arena judge relabel` asks "
        "this one to label them again.",
        markup=False,
    )


@judge_app.command("unset")
def judge_unset() -> None:
    """Forget the judge named with `arena judge set` (ARENA_JUDGE_* settings then apply)."""
    settings = Settings()

    async def work(session: AsyncSession) -> bool:
        return await unset_judge(session, actor=cli_actor())

    removed = _in_session(settings, work)
    console.print("judge removed" if removed else "no judge was set with `arena judge set`")


@judge_app.command("show")
def judge_show() -> None:
    """The judge in effect and how far it got: battles labelled (by which judge), waiting,
    given up."""
    settings = Settings()

    async def work(session: AsyncSession) -> tuple[str, labels.LabelCounts]:
        name = await judge_name(session, settings=settings)
        if name is None:
            described = "none (the judged categories are not offered)"
        else:
            described = name.model + (" (the demo judge: keyword rules, not an LLM)" * name.demo)
        return described, await labels.label_counts(session)

    described, counts = _in_session(settings, work, writes=False)
    console.print(f"judge: {described}; prompt version {PROMPT_VERSION}", markup=False)
    console.print(
        f"labelled: {counts.labelled}, waiting: {counts.waiting}, given up: {counts.given_up}",
        markup=False,
    )
    for judge, n in sorted(counts.by_judge.items()):
        console.print(f"  {judge}: {n}", markup=False, highlight=False)


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        err_console.print(
            f"[red]error:[/red] --since: {value!r} is not a date; write e.g. 2026-12-01 or "
            "2026-12-01T12:00",
            highlight=False,
        )
        raise typer.Exit(2) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@judge_app.command("relabel")
def judge_relabel(
    since: Annotated[
        str | None,
        typer.Option(help="Only battles voted on at or after this date (ISO 8601, UTC)"),
    ] = None,
) -> None:
    """Ask the judge in effect to label again the battles already labelled (or given up): after
    a change of judge or of prompt. Their labels stay until the new ones arrive."""
    settings = Settings()
    moment = _since(since)

    async def work(session: AsyncSession) -> int:
        count = await labels.relabel(session, since=moment)
        record_action(
            session,
            actor=cli_actor(),
            action="judge.relabel",
            target=f"{count} battles" + (f" voted since {moment.isoformat()}" if moment else ""),
        )
        return count

    count = _in_session(settings, work)
    console.print(f"{count} battle(s) queued to be labelled again", markup=False)
