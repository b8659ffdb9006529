"""The console's pages and forms: thin, calling the services the admin API and the CLI call, and
logging every action in the audit log as the admin API does."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

from fastapi import APIRouter, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from arena.audit import (
    ADMIN_API_ACTOR,
    FLAG_ACTIONS,
    STATUS_ACTIONS,
    actions_csv_response,
    recent_actions,
    record_action,
)
from arena.battles import flag_review, integrity
from arena.battles.flag_review import Decision
from arena.config import Settings
from arena.console.session import (
    FormDep,
    SessionDep,
    SignInNeeded,
    console_session,
    end_session,
    start_session,
)
from arena.db import SessionDep as DbDep
from arena.errors import ArenaError, InvalidInput, validation_message
from arena.models import Model, ModelStatus, ModelStatusEvent, Owner, RatingSnapshot
from arena.moderation import moderation_setup, refusal_counts
from arena.registry import owners
from arena.registry import service as registry
from arena.registry.auth import (
    check_not_blocked,
    client_address,
    failed_auth_window,
    same_secret,
)
from arena.registry.probe import probe_endpoint
from arena.registry.schemas import ProbeOut
from arena.templating import templates


class ConsolePage(APIRoute):
    """A console route: its errors are pages a person reads, not JSON, and a lost session
    leads back to the sign-in form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_as_page(request: Request) -> Response:
            try:
                return await handle(request)
            except SignInNeeded:
                return RedirectResponse("/admin/login", status_code=303)
            except ArenaError as exc:
                message, status = exc.message, exc.status_code
            except RequestValidationError as exc:
                message, status = validation_message(exc), 422
            return _page(request, "console_error.html", {"message": message}, status=status)

        return handle_as_page


router = APIRouter(prefix="/admin", include_in_schema=False, route_class=ConsolePage)

ACTOR: Final = ADMIN_API_ACTOR
Reason = Annotated[str, Form(max_length=500)]
_HISTORY: Final = 5


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"nav": "console", **context}, status_code=status
    )


def _back(notice: str = "") -> RedirectResponse:
    # After a post, a redirect (303) to the page: a reload does not post the form again.
    return RedirectResponse("/admin" + (f"?done={notice}" if notice else ""), status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    return _page(request, "console_login.html", {"error": ""})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, token: Annotated[str, Form(max_length=500)] = "") -> Response:
    settings: Settings = request.app.state.settings
    expected = settings.resolved_admin_token()
    if not expected:
        return _page(
            request,
            "console_login.html",
            {"error": "The console is off: the operator must set ARENA_ADMIN_TOKEN."},
            status=403,
        )
    window, address = failed_auth_window(request), client_address(request)
    check_not_blocked(window, address, "failed sign-ins")
    if not token or not same_secret(token, expected):
        window.record(address)
        return _page(
            request,
            "console_login.html",
            {"error": "That is not the admin token (ARENA_ADMIN_TOKEN)."},
            status=401,
        )
    response = RedirectResponse("/admin", status_code=303)
    start_session(request, response)
    return response


@router.post("/logout")
async def logout(_session: FormDep) -> Response:
    response = RedirectResponse("/admin/login", status_code=303)
    end_session(response)
    return response


async def _events(db: DbDep, model_ids: list[int]) -> dict[int, list[ModelStatusEvent]]:
    history: dict[int, list[ModelStatusEvent]] = {i: [] for i in model_ids}
    rows = await db.scalars(
        select(ModelStatusEvent)
        .where(ModelStatusEvent.model_id.in_(model_ids))
        .order_by(ModelStatusEvent.id.desc())
    )
    for event in rows:
        if len(history[event.model_id]) < _HISTORY:
            history[event.model_id].append(event)
    return history


@router.get("", response_class=HTMLResponse)
async def console(request: Request, db: DbDep, done: str = "") -> Response:
    try:
        session = console_session(request)
    except SignInNeeded:
        return RedirectResponse("/admin/login", status_code=303)
    settings: Settings = request.app.state.settings
    models = await registry.list_models(db)
    emails = {row.id: row.email for row in await db.execute(select(Owner.id, Owner.email))}
    latest_snapshot = await db.scalar(select(func.max(RatingSnapshot.computed_at)))
    report = await integrity.flag_report(db, limit=100)
    scheduler = request.app.state.recompute
    return _page(
        request,
        "console.html",
        {
            "csrf": session.csrf,
            "done": done[:200],
            "pending": [m for m in models if m.status == ModelStatus.pending],
            "models": [m for m in models if m.status != ModelStatus.pending],
            "emails": emails,
            "history": await _events(db, [m.id for m in models]),
            "breaker": settings.circuit_breaker_failures,
            "owners": await owners.list_owners(db),
            "actions": await recent_actions(db, limit=50),
            "latest_snapshot": latest_snapshot,
            "last_recompute": scheduler.last_outcome,
            "recompute_requested": scheduler.requested,
            "invite_days": settings.invite_days,
            "flag_counts": report.counts,
            "open_flags": [s for s in report.sessions if s.decision is None],
            "decided_flags": [s for s in report.sessions if s.decision is not None][:20],
            "moderation": {
                "setup": moderation_setup(settings),
                "counts": await refusal_counts(db),
            },
        },
    )


async def _model(db: DbDep, name: str) -> Model:
    return await registry.model_by_name(db, name)


@router.post("/models/{name:path}/approve")
async def approve(name: str, _form: FormDep, db: DbDep, reason: Reason = "") -> Response:
    model = await registry.approve_model(
        db, model=await _model(db, name), reason=reason, actor=ACTOR
    )
    record_action(db, actor=ACTOR, action="model.approve", target=model.name, reason=reason)
    await db.commit()
    return _back(f"{model.name} approved")


_MOVES: Final = {
    "pause": ModelStatus.paused,
    "resume": ModelStatus.active,
    "retire": ModelStatus.retired,
}


@router.post("/models/{name:path}/status")
async def move(
    name: str,
    _form: FormDep,
    db: DbDep,
    to: Annotated[str, Form(max_length=10)],
    reason: Reason = "",
) -> Response:
    status = _MOVES.get(to)
    if status is None:
        raise InvalidInput(f"to: one of {', '.join(_MOVES)} (got {to!r})")
    if status != ModelStatus.active and not reason.strip():
        raise InvalidInput(f"reason: to {to} a model, give a reason; its owner is shown it")
    model = await registry.set_status(
        db,
        model=await _model(db, name),
        status=status,
        reason=reason or "resumed by the operator",
        actor=ACTOR,
    )
    record_action(
        db,
        actor=ACTOR,
        action=STATUS_ACTIONS[status],
        target=model.name,
        reason=model.status_reason,
    )
    await db.commit()
    return _back(f"{model.name} is now {model.status.value}")


@router.post("/models/{name:path}/weight")
async def weight(
    name: str,
    _form: FormDep,
    db: DbDep,
    value: Annotated[float, Form(ge=0, le=1000)],
    reason: Reason = "",
) -> Response:
    model = await registry.set_sampling_weight(db, model=await _model(db, name), weight=value)
    record_action(
        db,
        actor=ACTOR,
        action="model.weight",
        target=model.name,
        reason=f"weight {value:g}" + (f": {reason}" if reason else ""),
    )
    await db.commit()
    return _back(f"{model.name} now has sampling weight {value:g}")


@router.post("/models/{name:path}/probe", response_class=HTMLResponse)
async def probe(name: str, _form: FormDep, request: Request, db: DbDep) -> HTMLResponse:
    model = await _model(db, name)
    endpoint = registry.endpoint_of(model, request.app.state.keys)
    reads_images = model.supports_images
    await db.rollback()  # hold no transaction while the endpoint thinks
    result = await probe_endpoint(
        request.app.state.http, endpoint, settings=request.app.state.settings, images=reads_images
    )
    return _page(
        request,
        "console_result.html",
        {"title": f"Probe of {name}", "probe": ProbeOut.of(result), "secret": None},
    )


@router.post("/owners/{owner_id}/revoke")
async def revoke(owner_id: int, _form: FormDep, db: DbDep) -> Response:
    owner = await owners.revoke_owner(db, owner=await owners.owner_by_ref(db, str(owner_id)))
    record_action(db, actor=ACTOR, action="owner.revoke", target=owner.email)
    await db.commit()
    return _back(f"the token of {owner.email} is revoked")


@router.post("/owners/{owner_id}/token", response_class=HTMLResponse)
async def new_token(owner_id: int, _form: FormDep, request: Request, db: DbDep) -> HTMLResponse:
    owner = await owners.owner_by_ref(db, str(owner_id))
    token = await owners.issue_new_token(db, owner=owner)
    record_action(db, actor=ACTOR, action="owner.new_token", target=owner.email)
    await db.commit()
    return _page(
        request,
        "console_result.html",
        {
            "title": f"A new token for {owner.email}",
            "secret": token,
            "note": "Hand it over out of band; it is shown this once. The old one no longer works.",
            "probe": None,
        },
    )


@router.post("/invites", response_class=HTMLResponse)
async def invite(
    _form: FormDep, request: Request, db: DbDep, email: Annotated[str, Form(max_length=254)]
) -> HTMLResponse:
    from arena.registry.schemas import InviteIn

    try:
        checked = InviteIn(email=email)
    except ValueError:
        raise InvalidInput(f"email: {email!r} is not an e-mail address") from None
    created, code = await owners.create_invite(db, email=checked.email)
    record_action(db, actor=ACTOR, action="invite.create", target=created.email)
    await db.commit()
    days = request.app.state.settings.invite_days
    return _page(
        request,
        "console_result.html",
        {
            "title": f"An invite for {created.email}",
            "secret": code,
            "note": f"One use, valid {days} days; it is shown this once.",
            "probe": None,
        },
    )


@router.post("/flags/decision")
async def decide_flag(
    _form: FormDep,
    db: DbDep,
    session_hash: Annotated[str, Form(min_length=1, max_length=64)],
    reason: Annotated[str, Form(min_length=1, max_length=64)],
    decision: Annotated[Decision, Form()],
    note: Reason = "",
) -> Response:
    restored = await flag_review.decide_flag(
        db, session_hash=session_hash, reason=reason, decision=decision, note=note
    )
    record_action(
        db,
        actor=ACTOR,
        action=FLAG_ACTIONS[decision],
        target=f"{reason} {session_hash}",
        reason=note,
    )
    await db.commit()
    counted = f"; {restored} of its votes count again" if restored else ""
    return _back(f"the flag of session {session_hash[:12]}… is {decision}{counted}")


@router.post("/recompute")
async def recompute(_form: FormDep, request: Request, db: DbDep) -> Response:
    request.app.state.recompute.request()
    record_action(db, actor=ACTOR, action="ratings.recompute")
    await db.commit()
    return _back("a recompute is on its way")


@router.get("/audit.csv", response_class=StreamingResponse)
async def audit_csv(_session: SessionDep, request: Request) -> StreamingResponse:
    return actions_csv_response(request.app.state.sessionmaker)
