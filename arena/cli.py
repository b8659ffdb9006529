"""The `arena` command: thin; it calls the same services as the routes."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from arena import migrate
from arena.audit import STATUS_ACTIONS, actions_csv, cli_actor, recent_actions, record_action
from arena.battles import erasure, style_backfill
from arena.config import Settings
from arena.db import database_location, in_one_transaction, make_sync_engine
from arena.errors import ArenaError
from arena.judge_cli import judge_app
from arena.listening import announce_when_listening
from arena.models import Model, ModelStatus, OperatorAction
from arena.ratings_cli import ratings_app
from arena.registry import owners
from arena.registry import service as registry
from arena.registry.keys import KeyRing, generate_key
from arena.registry.schemas import InviteIn

app = typer.Typer(help="A self-hostable chatbot arena.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
models_app = typer.Typer(help="Model endpoints that compete.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
owners_app = typer.Typer(help="Model owners, their invites and tokens.", no_args_is_help=True)
keys_app = typer.Typer(help="The keys that encrypt endpoint API keys.", no_args_is_help=True)
app.add_typer(owners_app, name="owners")
app.add_typer(keys_app, name="keys")
app.add_typer(ratings_app, name="ratings")
audit_app = typer.Typer(help="The audit log of operator actions.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
battles_app = typer.Typer(help="Battles, and erasure requests of their visitors.")
app.add_typer(battles_app, name="battles")
app.add_typer(judge_app, name="judge")

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


@app.callback()
def check_settings() -> None:
    """A self-hostable chatbot arena."""
    # Every command reads the settings; a bad one is named once, before any work starts.
    try:
        Settings()
    except ValidationError as exc:
        for problem in exc.errors():
            name = "ARENA_" + "_".join(str(part) for part in problem["loc"]).upper()
            err_console.print(f"[red]error:[/red] {name}: {problem['msg']}", highlight=False)
        raise typer.Exit(2) from None


def _in_session(
    settings: Settings, work: Callable[[AsyncSession], Awaitable[T]], *, writes: bool = True
) -> T:
    """Run one unit of work in one transaction, turning arena errors into a clean exit;
    `writes=False` for a command that only reads (in_one_transaction)."""

    try:
        return asyncio.run(in_one_transaction(settings.database_url, work, writes=writes))
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

    from arena.http_protocol import ArenaHttpProtocol
    from arena.log_format import uvicorn_log_config

    settings = Settings()
    if demo or settings.demo:
        from arena.registry.demo_models import start_demo_for_serve
        from arena.upstream.demo import DEMO_MODELS, demo_base_url

        try:
            start_demo_for_serve(settings)
        except ArenaError as exc:
            err_console.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(2) from None
        # soft_wrap: the terminal wraps a long line, rich would break it mid-list.
        console.print(
            f"demo endpoints at {demo_base_url(settings.demo_port)}: "
            + ", ".join(m.name for m in DEMO_MODELS),
            soft_wrap=True,
        )
    # Workers are separate processes that rebuild the app from ARENA_* variables.
    os.environ.setdefault("ARENA_DATABASE_URL", settings.database_url)
    if demo or settings.demo:
        os.environ["ARENA_ALLOW_PRIVATE_ENDPOINTS"] = "true"
    settings.resolved_secret_key()  # created once here, not raced by the workers
    if settings.metrics and (workers or settings.workers) > 1:
        from arena.metrics import prepare_multiprocess_dir

        prepare_multiprocess_dir(settings.data_dir)
    host = host or settings.host
    port = port or settings.port
    if settings.log_format == "json":
        # One JSON object a line, this one too (the log lines are configured by then).
        announce_when_listening(host, port, logging.getLogger("arena.serve").info)
    else:
        announce_when_listening(host, port, lambda line: console.print(line, soft_wrap=True))
    uvicorn.run(
        "arena.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers or settings.workers,
        http=ArenaHttpProtocol,
        log_level="info",
        log_config=uvicorn_log_config(settings.log_format),
        access_log=settings.access_log,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
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
    done = migrate.upgrade(settings.database_url)
    where = database_location(settings.database_url)
    if done.created:
        message = f"created the database at {where} (schema {done.after})"
    elif done.changed:
        message = f"upgraded the database at {where} from schema {done.before} to {done.after}"
    else:
        message = f"the database at {where} is up to date (schema {done.after})"
    console.print(message, soft_wrap=True, highlight=False)


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
    supports_images: Annotated[
        bool,
        typer.Option(
            "--supports-images",
            help="The model reads images: it meets others in battles whose prompt has images",
        ),
    ] = False,
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
        supports_images=supports_images,
    )

    async def work(session: AsyncSession) -> Model:
        record_action(session, actor=cli_actor(), action="model.add", target=name)
        return await registry.add_model(session, new=new, keys=keys, actor="cli")

    added = _in_session(settings, work)
    console.print(f"added {added.name} (active)")


@models_app.command("list")
def models_list(
    status: Annotated[
        ModelStatus | None, typer.Option(help="Only models in this status, e.g. pending")
    ] = None,
) -> None:
    """Every model with its status (and why it is in it)."""

    async def work(session: AsyncSession) -> list[Model]:
        return await registry.list_models(session, status=status)

    models = _in_session(Settings(), work, writes=False)
    table = Table("name", "status", "why", "organization", "upstream model", "base URL", "key")
    for m in models:
        table.add_row(
            m.name,
            m.status.value,
            m.status_reason,
            m.organization,
            m.upstream_model,
            m.base_url,
            f"…{m.api_key_last4}" if m.api_key_last4 else ("set" if m.api_key_encrypted else ""),
        )
    console.print(table)


# What the owner reads in its stats when the operator gave no --reason
_DEFAULT_REASONS = {
    ModelStatus.paused: "paused by the operator",
    ModelStatus.active: "resumed by the operator",
    ModelStatus.retired: "retired by the operator",
}


def _change_status(name: str, status: ModelStatus, reason: str) -> None:
    async def work(session: AsyncSession) -> Model:
        model = await registry.model_by_name(session, name)
        return await registry.set_status(
            session,
            model=model,
            status=status,
            reason=reason or _DEFAULT_REASONS.get(status, ""),
            actor="cli",
        )
        record_action(
            session,
            actor=cli_actor(),
            action=STATUS_ACTIONS[status],
            target=model.name,
            reason=reason or _DEFAULT_REASONS.get(status, ""),
        )

    changed = _in_session(Settings(), work)
    console.print(f"{changed.name} is now {changed.status.value}")


@models_app.command("approve")
def models_approve(name: str, reason: Annotated[str, typer.Option()] = "") -> None:
    """Let a pending model (registered by its owner) compete."""

    async def work(session: AsyncSession) -> Model:
        model = await registry.model_by_name(session, name)
        record_action(
            session, actor=cli_actor(), action="model.approve", target=model.name, reason=reason
        )
        return await registry.approve_model(session, model=model, reason=reason, actor="cli")

    approved = _in_session(Settings(), work)
    console.print(f"{approved.name} is now {approved.status.value}")


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


@models_app.command("weight")
def models_weight(
    name: str,
    weight: Annotated[float, typer.Argument(min=0, max=1000)],
    reason: Annotated[str, typer.Option()] = "",
) -> None:
    """Set how often a model is drawn, relative to the others (0: never)."""

    async def work(session: AsyncSession) -> Model:
        model = await registry.model_by_name(session, name)
        record_action(
            session,
            actor=cli_actor(),
            action="model.weight",
            target=model.name,
            reason=f"weight {weight:g}" + (f": {reason}" if reason else ""),
        )
        return await registry.set_sampling_weight(session, model=model, weight=weight)

    changed = _in_session(Settings(), work)
    console.print(f"{changed.name} now has sampling weight {changed.sampling_weight:g}")


@owners_app.command("invite")
def owners_invite(email: str) -> None:
    """Print a one-time sign-up code for EMAIL (needed when ARENA_OPEN_SIGNUP=false)."""
    try:
        InviteIn(email=email)
    except ValueError:
        err_console.print(f"[red]error:[/red] {email!r} is not an email address")
        raise typer.Exit(2) from None
    settings = Settings()

    async def work(session: AsyncSession) -> str:
        invite, code = await owners.create_invite(session, email=email)
        record_action(session, actor=cli_actor(), action="invite.create", target=invite.email)
        return code

    code = _in_session(settings, work)
    console.print(f"invite code for {email} (one use, valid {settings.invite_days} days):")
    console.print(code, markup=False, highlight=False)


@owners_app.command("list")
def owners_list() -> None:
    """Every owner, its number of models and whether its token is revoked."""
    summaries = _in_session(Settings(), owners.list_owners, writes=False)
    table = Table("id", "name", "email", "models", "created", "revoked")
    for s in summaries:
        table.add_row(
            str(s.owner.id),
            s.owner.name,
            s.owner.email,
            str(s.models),
            f"{s.owner.created_at:%Y-%m-%d}",
            f"{s.owner.revoked_at:%Y-%m-%d %H:%M}" if s.owner.revoked_at else "",
        )
    console.print(table)


@owners_app.command("revoke")
def owners_revoke(owner: Annotated[str, typer.Argument(help="Owner id or email")]) -> None:
    """Revoke an owner's token at once; its models keep their status."""

    async def work(session: AsyncSession) -> str:
        found = await owners.revoke_owner(session, owner=await owners.owner_by_ref(session, owner))
        record_action(session, actor=cli_actor(), action="owner.revoke", target=found.email)
        return found.email

    console.print(f"the token of {_in_session(Settings(), work)} is revoked")


@owners_app.command("new-token")
def owners_new_token(owner: Annotated[str, typer.Argument(help="Owner id or email")]) -> None:
    """Issue a new token for an owner (the old one stops working) and print it once."""

    async def work(session: AsyncSession) -> str:
        found = await owners.owner_by_ref(session, owner)
        record_action(session, actor=cli_actor(), action="owner.new_token", target=found.email)
        return await owners.issue_new_token(session, owner=found)

    token = _in_session(Settings(), work)
    console.print(token, markup=False, highlight=False)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored endpoint key with ARENA_SECRET_KEY; afterwards the keys listed in
    ARENA_OLD_SECRET_KEYS can be dropped."""
    settings = Settings()
    keys = KeyRing.from_settings(settings)

    async def work(session: AsyncSession) -> int:
        record_action(session, actor=cli_actor(), action="keys.rotate")
        return await registry.rotate_endpoint_keys(session, keys=keys)

    console.print(f"re-encrypted {_in_session(settings, work)} endpoint keys with the newest key")


@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="How many, newest first")] = 50,
    csv: Annotated[bool, typer.Option("--csv", help="The whole log as CSV, oldest first")] = False,
) -> None:
    """The operator actions (admin API and CLI): who, when, what, to what, why."""
    settings = Settings()
    if csv:

        async def whole(session: AsyncSession) -> list[bytes]:
            return [chunk async for chunk in actions_csv(session)]

        for chunk in _in_session(settings, whole, writes=False):
            sys.stdout.write(chunk.decode())
        return

    async def work(session: AsyncSession) -> list[OperatorAction]:
        return list(await recent_actions(session, limit=limit))

    table = Table("id", "time (UTC)", "actor", "action", "target", "reason")
    for entry in _in_session(settings, work, writes=False):
        table.add_row(
            str(entry.id),
            f"{entry.created_at:%Y-%m-%d %H:%M:%S}",
            entry.actor,
            entry.action,
            entry.target,
            entry.reason,
        )
    console.print(table)


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new key for ARENA_SECRET_KEY (move the current one to ARENA_OLD_SECRET_KEYS)."""
    console.print(generate_key(), markup=False, highlight=False)


@battles_app.command("erase")
def battles_erase(
    battle_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Ids of the battles to erase, as the visitor's My battles list shows"),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(
            help="Erase every battle of this browser session: the value of its arena_session cookie"
        ),
    ] = None,
) -> None:
    """Erase the texts of battles at their visitor's request; their votes stay counted, without
    text, and every later export says they were erased. Put the ids after `--`: an id may start
    with "-"."""
    if not battle_ids and session is None:
        err_console.print("[red]error:[/red] name at least one battle id, or give --session")
        raise typer.Exit(2)
    settings = Settings()
    secret = settings.resolved_secret_key()

    async def work(db: AsyncSession) -> list[erasure.ErasedBattle]:
        erased = []
        if battle_ids:
            erased += await erasure.erase_battles(db, battle_ids=battle_ids, settings=settings)
        if session is not None:
            erased += await erasure.erase_session_battles(
                db, session_id=session, secret=secret, settings=settings
            )
        for battle in erased:
            if battle.newly:
                record_action(db, actor=cli_actor(), action="battle.erase", target=battle.battle_id)
        return erased

    for battle in _in_session(settings, work):
        state = "erased" if battle.newly else "already erased"
        console.print(
            f"{battle.battle_id}: {state} at {battle.erased_at:%Y-%m-%d %H:%M:%S} UTC",
            markup=False,
            highlight=False,
        )


@battles_app.command("backfill-style")
def battles_backfill_style(
    batch: Annotated[
        int, typer.Option(min=1, max=100_000, help="Battles per committed transaction")
    ] = style_backfill.BATCH,
) -> None:
    """Work out the style features (answer tokens, headers, list items, bold spans) of battles
    stored before they were kept, from their stored answers. Safe beside a running arena and
    to run again: it resumes where it stopped. The recompute also fills the voted ones it meets."""
    settings = Settings()
    engine = make_sync_engine(settings.database_url)
    try:
        outcome = style_backfill.backfill_styles(
            engine,
            batch=batch,
            progress=lambda done, total: err_console.print(
                f"{done}/{total} battles", markup=False, highlight=False
            ),
        )
    finally:
        engine.dispose()
    console.print(f"style features stored for {outcome.stored} battle(s)", markup=False)
    if outcome.erased_without_style:
        console.print(
            f"{outcome.erased_without_style} battle(s) were erased before their style was worked "
            "out: the style-controlled tables leave them out",
            markup=False,
        )


def main() -> None:
    sys.exit(app())
