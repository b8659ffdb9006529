"""The `arena` command: thin; it calls the same services as the routes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from arena import migrate
from arena.config import Settings
from arena.db import make_async_engine, make_sessionmaker
from arena.errors import ArenaError
from arena.models import Model, ModelStatus
from arena.ratings_cli import ratings_app
from arena.registry import service as registry
from arena.registry.keys import KeyRing

app = typer.Typer(help="A self-hostable chatbot arena.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
models_app = typer.Typer(help="Model endpoints that compete.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
app.add_typer(ratings_app, name="ratings")

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


def _in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one unit of work in one transaction, turning arena errors into a clean exit."""

    async def run() -> T:
        engine = make_async_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except ArenaError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (ARENA_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (ARENA_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (ARENA_WORKERS)")] = None,
    demo: Annotated[
        bool, typer.Option(help="Also start the built-in demo endpoints and register them")
    ] = False,
) -> None:
    """Start the arena web service."""
    import uvicorn

    settings = Settings()
    if demo or settings.demo:
        from arena.upstream.demo import DEMO_MODELS, demo_base_url, start_demo_for_serve

        try:
            start_demo_for_serve(settings)
        except ArenaError as exc:
            err_console.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(2) from None
        console.print(
            f"demo endpoints at {demo_base_url(settings.demo_port)}: "
            + ", ".join(m.name for m in DEMO_MODELS)
        )
    # Workers are separate processes that rebuild the app from ARENA_* variables.
    os.environ.setdefault("ARENA_DATABASE_URL", settings.database_url)
    if demo or settings.demo:
        os.environ["ARENA_ALLOW_PRIVATE_ENDPOINTS"] = "true"
    settings.resolved_secret_key()  # created once here, not raced by the workers
    uvicorn.run(
        "arena.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        log_level="info",
        proxy_headers=False,
    )


@app.command("demo-upstream")
def demo_upstream(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Port (ARENA_DEMO_PORT)")] = None,
    seconds_per_word: Annotated[
        float | None,
        typer.Option(min=0.0, max=5.0, help="Pause between words (ARENA_DEMO_SECONDS_PER_WORD)"),
    ] = None,
) -> None:
    """Run the built-in OpenAI-compatible server with its deterministic demo models."""
    import uvicorn

    from arena.upstream.demo import create_demo_app

    settings = Settings()
    pace = settings.demo_seconds_per_word if seconds_per_word is None else seconds_per_word
    uvicorn.run(
        create_demo_app(pace), host=host, port=port or settings.demo_port, log_level="warning"
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration the database does not have yet."""
    settings = Settings()
    migrate.upgrade(settings.database_url)
    console.print("database is up to date")


@db_app.command("check")
def db_check() -> None:
    """Fail if the tables and the migrations disagree."""
    migrate.check(Settings().database_url)


@models_app.command("add")
def models_add(
    name: Annotated[str, typer.Option(help="Public name, shown after a vote")],
    base_url: Annotated[
        str, typer.Option(help="OpenAI-compatible base URL, e.g. http://host:8000/v1")
    ],
    model: Annotated[str, typer.Option(help="The model id the endpoint expects")],
    api_key_env: Annotated[
        str | None, typer.Option(help="Name of an environment variable holding the API key")
    ] = None,
    organization: Annotated[str, typer.Option()] = "",
    license: Annotated[str, typer.Option()] = "",
    description: Annotated[str, typer.Option()] = "",
    max_tokens: Annotated[int, typer.Option(min=1, max=32768)] = 1024,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.7,
    system_prompt: Annotated[str, typer.Option()] = "",
) -> None:
    """Register an endpoint and make it active at once."""
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            err_console.print(f"[red]error:[/red] environment variable {api_key_env} is empty")
            raise typer.Exit(2)
    settings = Settings()
    keys = KeyRing.from_settings(settings)
    new = registry.NewModel(
        name=name,
        base_url=base_url,
        upstream_model=model,
        api_key=api_key,
        organization=organization,
        license=license,
        description=description,
        max_tokens=max_tokens,
        temperature=temperature,
        system_prompt=system_prompt,
    )

    async def work(session: AsyncSession) -> Model:
        return await registry.add_model(session, new=new, keys=keys, actor="cli")

    added = _in_session(settings, work)
    console.print(f"added {added.name} (active)")


@models_app.command("list")
def models_list() -> None:
    """Every model with its status."""
    models = _in_session(Settings(), registry.list_models)
    table = Table("name", "status", "organization", "upstream model", "base URL", "key")
    for m in models:
        table.add_row(
            m.name,
            m.status.value,
            m.organization,
            m.upstream_model,
            m.base_url,
            f"…{m.api_key_last4}" if m.api_key_last4 else ("set" if m.api_key_encrypted else ""),
        )
    console.print(table)


def _change_status(name: str, status: ModelStatus, reason: str) -> None:
    async def work(session: AsyncSession) -> Model:
        model = await registry.model_by_name(session, name)
        return await registry.set_status(
            session, model=model, status=status, reason=reason, actor="cli"
        )

    changed = _in_session(Settings(), work)
    console.print(f"{changed.name} is now {changed.status.value}")


@models_app.command("pause")
def models_pause(name: str, reason: Annotated[str, typer.Option()] = "") -> None:
    """Stop drawing a model into battles for now."""
    _change_status(name, ModelStatus.paused, reason)


@models_app.command("resume")
def models_resume(name: str, reason: Annotated[str, typer.Option()] = "") -> None:
    """Draw a paused or pending model into battles again."""
    _change_status(name, ModelStatus.active, reason)


@models_app.command("retire")
def models_retire(name: str, reason: Annotated[str, typer.Option()] = "") -> None:
    """Retire a model for good; it keeps its place and rating on the leaderboard."""
    _change_status(name, ModelStatus.retired, reason)


def main() -> None:
    sys.exit(app())
